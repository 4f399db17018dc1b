//! The CPUID table each vCPU sees: KVM's supported set, adjusted for the
//! configured topology and identifying the hypervisor as bhyve.
//!
//! Like bhyve's x86.c, the APIC id of vCPU N is N and the topology leaves
//! describe `sockets × cores × threads`; field widths are rounded up to
//! powers of two as the Intel and AMD manuals require. KVM's own
//! paravirtual leaves (0x40000001…) are removed: a bhyve guest must not
//! assume KVM (kvmclock, PV EOI, hypercalls).

use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// Guest CPU topology (bhyve's `cpus`, `sockets`, `cores`, `threads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub cpus: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

impl CpuTopology {
    /// One socket per vCPU, bhyve's default for `-c N`.
    pub fn flat(cpus: u32) -> Self {
        Self {
            cpus,
            sockets: cpus,
            cores: 1,
            threads: 1,
        }
    }

    /// Logical processors in one package.
    pub fn per_package(&self) -> u32 {
        self.cores.saturating_mul(self.threads).max(1)
    }
}

/// Per-vCPU CPUID settings.
#[derive(Debug, Clone, Copy)]
pub struct CpuidParams {
    pub topology: CpuTopology,
    pub apic_id: u32,
    pub x2apic: bool,
}

/// "bhyve bhyve " in EBX, ECX, EDX of leaf 0x40000000.
const SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"bhyv"),
    u32::from_le_bytes(*b"e bh"),
    u32::from_le_bytes(*b"yve "),
];

const HV_BASE: u32 = 0x4000_0000;
const CPUID1_ECX_X2APIC: u32 = 1 << 21;
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
const CPUID1_EDX_HTT: u32 = 1 << 28;
const AMD_EXT1_ECX_CMP_LEGACY: u32 = 1 << 1;
const AMD_EXT1_ECX_TOPOEXT: u32 = 1 << 22;

/// Bits needed to number `n` items (ceil(log2 n)).
fn width(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn is_amd(entries: &[kvm_cpuid_entry2]) -> bool {
    entries.iter().find(|e| e.function == 0).is_some_and(|e| {
        let v = [e.ebx, e.edx, e.ecx];
        let bytes: Vec<u8> = v.iter().flat_map(|r| r.to_le_bytes()).collect();
        bytes == *b"AuthenticAMD" || bytes == *b"HygonGenuine"
    })
}

fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

/// Extended topology (leaf 0xB / 0x1F) for one vCPU: SMT then core level.
fn topology_leaf(function: u32, p: &CpuidParams) -> Vec<kvm_cpuid_entry2> {
    let t = p.topology;
    let smt_shift = width(t.threads);
    let core_shift = smt_shift + width(t.cores);
    vec![
        entry(function, 0, [smt_shift, t.threads, 1 << 8, p.apic_id]),
        entry(
            function,
            1,
            [core_shift, t.per_package(), (2 << 8) | 1, p.apic_id],
        ),
        entry(function, 2, [0, 0, 2, p.apic_id]),
    ]
}

/// Builds one vCPU's CPUID table from KVM's supported entries.
pub fn build(supported: &[kvm_cpuid_entry2], p: &CpuidParams) -> Vec<kvm_cpuid_entry2> {
    let t = p.topology;
    let amd = is_amd(supported);
    let logical = t.per_package();
    let mut out: Vec<kvm_cpuid_entry2> = Vec::with_capacity(supported.len() + 4);
    let mut saw_1f = false;
    for e in supported {
        let mut e = *e;
        match e.function {
            0x1 => {
                e.ebx =
                    (e.ebx & 0x0000_ffff) | ((p.apic_id & 0xff) << 24) | ((logical.min(255)) << 16);
                e.edx |= CPUID1_EDX_HTT;
                e.ecx |= CPUID1_ECX_HYPERVISOR;
                if p.x2apic {
                    e.ecx |= CPUID1_ECX_X2APIC;
                } else {
                    e.ecx &= !CPUID1_ECX_X2APIC;
                }
            }
            0x4 if !amd => {
                // Cores per package (EAX[31:26]) and the threads sharing
                // each cache (EAX[25:14]): L1/L2 per core, L3 per package.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { logical } else { t.threads };
                let cores_field = (1u32 << width(t.cores)).min(64) - 1;
                let share_field = ((1u32 << width(sharing)) - 1).min(0xfff);
                e.eax = (e.eax & 0x3fff) | (share_field << 14) | (cores_field << 26);
            }
            0xb => continue,
            0x1f => {
                saw_1f = true;
                continue;
            }
            f if (HV_BASE..HV_BASE + 0x100).contains(&f) => continue,
            0x8000_0001 if amd => {
                if logical > 1 {
                    e.ecx |= AMD_EXT1_ECX_CMP_LEGACY;
                } else {
                    e.ecx &= !AMD_EXT1_ECX_CMP_LEGACY;
                }
                e.ecx &= !AMD_EXT1_ECX_TOPOEXT;
            }
            0x8000_0008 if amd => {
                let nc = (logical - 1) & 0xff;
                e.ecx = (e.ecx & !0xf0ff) | nc | (width(logical) << 12);
            }
            // Described through TopologyExtensions, which is cleared above.
            0x8000_001d | 0x8000_001e if amd => continue,
            _ => {}
        }
        out.push(e);
    }
    out.extend(topology_leaf(0xb, p));
    if saw_1f {
        out.extend(topology_leaf(0x1f, p));
    }
    let mut hv = entry(
        HV_BASE,
        0,
        [HV_BASE, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]],
    );
    hv.flags = 0;
    out.push(hv);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(out: &[kvm_cpuid_entry2], f: u32, i: u32) -> Option<kvm_cpuid_entry2> {
        out.iter()
            .find(|e| e.function == f && e.index == i)
            .copied()
    }

    fn intel() -> Vec<kvm_cpuid_entry2> {
        let vendor = b"GenuineIntel";
        let r = |o: usize| u32::from_le_bytes(vendor[o..o + 4].try_into().unwrap());
        vec![
            entry(0, 0, [0x1f, r(0), r(8), r(4)]),
            entry(1, 0, [0x906ea, 0x0010_0800, CPUID1_ECX_X2APIC, 0]),
            entry(4, 0, [0x121, 0, 0, 0]),
            entry(4, 3, [0x163, 0, 0, 0]),
            entry(0xb, 0, [1, 2, 0x100, 7]),
            entry(0x1f, 0, [1, 2, 0x100, 7]),
            entry(HV_BASE, 0, [HV_BASE + 1, 0x4b4d564b, 0x564b4d56, 0x4d]),
            entry(HV_BASE + 1, 0, [0xffff, 0, 0, 0]),
        ]
    }

    #[test]
    fn topology_and_identity() {
        let p = CpuidParams {
            topology: CpuTopology {
                cpus: 8,
                sockets: 2,
                cores: 2,
                threads: 2,
            },
            apic_id: 5,
            x2apic: false,
        };
        let out = build(&intel(), &p);
        let l1 = leaf(&out, 1, 0).unwrap();
        assert_eq!(l1.ebx >> 24, 5);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(l1.ebx & 0xffff, 0x0800);
        assert_ne!(l1.edx & CPUID1_EDX_HTT, 0);
        assert_ne!(l1.ecx & CPUID1_ECX_HYPERVISOR, 0);
        assert_eq!(l1.ecx & CPUID1_ECX_X2APIC, 0);
        assert_eq!(leaf(&out, 4, 0).unwrap().eax, 0x121 | (1 << 14) | (1 << 26));
        assert_eq!(leaf(&out, 4, 3).unwrap().eax, 0x163 | (3 << 14) | (1 << 26));
        let smt = leaf(&out, 0xb, 0).unwrap();
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (1, 2, 0x100, 5));
        let core = leaf(&out, 0xb, 1).unwrap();
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 4, 0x201, 5));
        assert_eq!(leaf(&out, 0xb, 2).unwrap().ecx, 2);
        assert_eq!(leaf(&out, 0x1f, 1).unwrap().ebx, 4);
        let hv = leaf(&out, HV_BASE, 0).unwrap();
        let sig: Vec<u8> = [hv.ebx, hv.ecx, hv.edx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        assert_eq!(&sig, b"bhyve bhyve ");
        assert_eq!(hv.eax, HV_BASE);
        assert!(leaf(&out, HV_BASE + 1, 0).is_none());
        assert_eq!(out.iter().filter(|e| e.function == 0xb).count(), 3);
    }

    #[test]
    fn x2apic_bit_follows_config() {
        let p = CpuidParams {
            topology: CpuTopology::flat(1),
            apic_id: 0,
            x2apic: true,
        };
        let out = build(&intel(), &p);
        assert_ne!(leaf(&out, 1, 0).unwrap().ecx & CPUID1_ECX_X2APIC, 0);
        assert_eq!((leaf(&out, 1, 0).unwrap().ebx >> 16) & 0xff, 1);
    }

    #[test]
    fn amd_leaves() {
        let vendor = b"AuthenticAMD";
        let r = |o: usize| u32::from_le_bytes(vendor[o..o + 4].try_into().unwrap());
        let sup = vec![
            entry(0, 0, [0x10, r(0), r(8), r(4)]),
            entry(1, 0, [0, 0, 0, 0]),
            entry(0x8000_0001, 0, [0, 0, AMD_EXT1_ECX_TOPOEXT, 0]),
            entry(0x8000_0008, 0, [0x3030, 0, 0x7007, 0]),
            entry(0x8000_001e, 0, [0, 0, 0, 0]),
        ];
        let p = CpuidParams {
            topology: CpuTopology {
                cpus: 6,
                sockets: 1,
                cores: 3,
                threads: 2,
            },
            apic_id: 3,
            x2apic: false,
        };
        let out = build(&sup, &p);
        let e1 = leaf(&out, 0x8000_0001, 0).unwrap();
        assert_eq!(e1.ecx, AMD_EXT1_ECX_CMP_LEGACY);
        assert_eq!(leaf(&out, 0x8000_0008, 0).unwrap().ecx, 5 | (3 << 12));
        assert!(leaf(&out, 0x8000_001e, 0).is_none());
    }

    #[test]
    fn widths() {
        assert_eq!(
            [width(0), width(1), width(2), width(3), width(4), width(5)],
            [0, 0, 1, 2, 2, 3]
        );
    }
}
