//! The Intel MultiProcessor table (MP spec 1.4) bhyve puts in guest
//! memory (bhyve's `mptbl.c`): how a guest without ACPI finds its CPUs and
//! learns how ISA interrupts reach the I/O APIC.
//!
//! Layout, all at [`MPTABLE_BASE`] in the BIOS area (reserved in our
//! e820): the 16-byte floating pointer, then the configuration table
//! header and its entries in the order the spec requires — one processor
//! per vCPU (APIC ID = vCPU index, as KVM numbers them and as our CPUID
//! reports), the buses (PCI 0, ISA 1), the I/O APIC, the I/O interrupt
//! assignments, the local interrupt assignments. No extended table.
//!
//! Interrupt assignments are bhyve's: ISA IRQ n goes to I/O APIC pin n,
//! except that pin 0 is the 8259's ExtINT output and IRQ 0 (the PIT)
//! goes to pin 2; IRQ 9 (bhyve's ACPI SCI) is level-triggered active-low;
//! the rest "conform to the bus", which for ISA means edge/active-high.
//! LINT0 of every CPU is ExtINT and LINT1 NMI. The vmm's GSI routing must
//! match (PIT → pin 2).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

// The same 8-bit sum-to-zero rule as ACPI's tables.
use crate::acpi::sdt::checksum;

/// Where the table goes (bhyve's `MPTABLE_BASE`).
pub const MPTABLE_BASE: u64 = 0xf_0000;
/// Where the table's room ends: bhyve's ACPI tables start here (RSDP at
/// 0xf2400), so a larger MP table would overwrite them.
pub const MPTABLE_LIMIT: u64 = crate::acpi::ACPI_BASE;
/// Local APIC and I/O APIC as KVM's in-kernel irqchip places them.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// KVM's I/O APIC has 24 pins; its ID register resets to 0, which is the
/// ID bhyve gives it here too.
pub const IOAPIC_PINS: u8 = 24;
pub const IOAPIC_ID: u8 = 0;
/// Version registers of KVM's in-kernel local APIC and I/O APIC.
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// APIC IDs are 8 bits and 0xff means "all": at most 255 processors.
pub const MAX_CPUS: usize = 255;
/// bhyve's ACPI SCI, level-triggered active-low.
pub const SCI_IRQ: u8 = 9;
/// ISA IRQ 0 (the PIT) arrives on this I/O APIC pin.
pub const PIT_IOAPIC_PIN: u8 = 2;

const SPEC_REV: u8 = 4;
const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const PROCESSOR_LEN: usize = 20;
const SMALL_ENTRY_LEN: usize = 8;
const ISA_PINS: u8 = 16;
const PCI_BUS_ID: u8 = 0;
const ISA_BUS_ID: u8 = 1;

/// Entry types.
pub const ENTRY_PROCESSOR: u8 = 0;
pub const ENTRY_BUS: u8 = 1;
pub const ENTRY_IOAPIC: u8 = 2;
pub const ENTRY_IO_INT: u8 = 3;
pub const ENTRY_LOCAL_INT: u8 = 4;
/// Interrupt types of I/O and local interrupt entries.
pub const INT_INT: u8 = 0;
pub const INT_NMI: u8 = 1;
pub const INT_EXTINT: u8 = 3;
/// Interrupt flags: polarity in bits 0–1, trigger mode in bits 2–3;
/// 0 is "conforms to the bus".
pub const INT_FLAGS_ACTIVE_LOW: u16 = 0x3;
pub const INT_FLAGS_LEVEL: u16 = 0xc;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const IOAPIC_ENABLED: u8 = 1;

/// What the processor entries report about the CPU: CPUID leaf 1's
/// family/model/stepping (EAX bits 0–11) and feature flags (EDX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuIdentity {
    pub signature: u32,
    pub features: u32,
}

impl Default for CpuIdentity {
    /// bhyve's fixed choice (an i7: family 6 model 26 stepping 5), for
    /// when no CPUID table is at hand. The MP field has 4 bits of model,
    /// so only model 26's low nibble is kept (bhyve lets it spill into
    /// the family field).
    fn default() -> Self {
        CpuIdentity {
            signature: (6 << 8) | ((26 & 0xf) << 4) | 5,
            features: 0xbfeb_fbff,
        }
    }
}

/// A PCI INTx line on bus 0 wired to an I/O APIC pin. The MP table can
/// describe only one PCI hierarchy, so bus 0 is implied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIntx {
    pub slot: u8,
    /// 1 = INTA# … 4 = INTD#, as in the PCI interrupt pin register.
    pub pin: u8,
    pub ioapic_pin: u8,
}

/// What the table describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpTableSpec {
    pub cpus: usize,
    pub cpu: CpuIdentity,
    pub pci_intx: Vec<PciIntx>,
}

impl MpTableSpec {
    /// `cpus` processors, bhyve's CPU identity, no PCI INTx lines.
    pub fn new(cpus: usize) -> Self {
        MpTableSpec {
            cpus,
            cpu: CpuIdentity::default(),
            pci_intx: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpTableError {
    #[error("MP table: {0} CPUs (must be 1 to {MAX_CPUS})")]
    CpuCount(usize),
    #[error("MP table: invalid PCI INTx slot {slot} pin {pin} → I/O APIC pin {ioapic_pin}")]
    BadIntx { slot: u8, pin: u8, ioapic_pin: u8 },
    #[error("MP table: {0} bytes do not fit in the BIOS area")]
    TooBig(usize),
    #[error("MP table: writing guest memory at {MPTABLE_BASE:#x}: {0}")]
    GuestMemory(String),
}

fn put_u16(v: &mut [u8], at: usize, x: u16) {
    v[at..at + 2].copy_from_slice(&x.to_le_bytes());
}

fn put_u32(v: &mut [u8], at: usize, x: u32) {
    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

/// An I/O (type 3) or local (type 4) interrupt entry.
fn int_entry(
    kind: u8,
    int_type: u8,
    flags: u16,
    bus: u8,
    bus_irq: u8,
    dst_id: u8,
    dst_pin: u8,
) -> [u8; 8] {
    let f = flags.to_le_bytes();
    [kind, int_type, f[0], f[1], bus, bus_irq, dst_id, dst_pin]
}

/// The I/O interrupt entries for the 16 ISA pins, as bhyve lays them out
/// (one per pin, pin order).
fn isa_entries() -> impl Iterator<Item = [u8; 8]> {
    (0..ISA_PINS).map(|pin| {
        let (int_type, irq, flags) = match pin {
            0 => (INT_EXTINT, 0, 0),
            PIT_IOAPIC_PIN => (INT_INT, 0, 0),
            SCI_IRQ => (INT_INT, SCI_IRQ, INT_FLAGS_ACTIVE_LOW | INT_FLAGS_LEVEL),
            _ => (INT_INT, pin, 0),
        };
        int_entry(
            ENTRY_IO_INT,
            int_type,
            flags,
            ISA_BUS_ID,
            irq,
            IOAPIC_ID,
            pin,
        )
    })
}

/// Builds the floating pointer and configuration table as they go at
/// [`MPTABLE_BASE`].
pub fn build(spec: &MpTableSpec) -> Result<Vec<u8>, MpTableError> {
    if spec.cpus == 0 || spec.cpus > MAX_CPUS {
        return Err(MpTableError::CpuCount(spec.cpus));
    }
    for x in &spec.pci_intx {
        if x.slot >= 32 || !(1..=4).contains(&x.pin) || x.ioapic_pin >= IOAPIC_PINS {
            return Err(MpTableError::BadIntx {
                slot: x.slot,
                pin: x.pin,
                ioapic_pin: x.ioapic_pin,
            });
        }
    }
    let io_ints = usize::from(ISA_PINS) + spec.pci_intx.len();
    let entries = spec.cpus + 2 + 1 + io_ints + 2;
    let base_len = HEADER_LEN + spec.cpus * PROCESSOR_LEN + (entries - spec.cpus) * SMALL_ENTRY_LEN;
    let total = FLOATING_LEN + base_len;
    if total as u64 > MPTABLE_LIMIT - MPTABLE_BASE {
        return Err(MpTableError::TooBig(total));
    }

    let mut t = vec![0u8; FLOATING_LEN + HEADER_LEN];
    // Floating pointer: one paragraph, configuration table right after
    // it, feature bytes 0 ("a configuration table is present", no IMCR).
    t[0..4].copy_from_slice(b"_MP_");
    put_u32(&mut t, 4, (MPTABLE_BASE + FLOATING_LEN as u64) as u32);
    t[8] = 1;
    t[9] = SPEC_REV;
    t[10] = checksum(&t[..FLOATING_LEN]);

    let h = FLOATING_LEN;
    t[h..h + 4].copy_from_slice(b"PCMP");
    put_u16(&mut t, h + 4, base_len as u16);
    t[h + 6] = SPEC_REV;
    t[h + 8..h + 16].copy_from_slice(b"BHyVe   ");
    t[h + 16..h + 28].copy_from_slice(b"Hypervisor  ");
    put_u16(&mut t, h + 34, entries as u16);
    put_u32(&mut t, h + 36, LAPIC_ADDR);
    // Extended table length and checksum stay 0: there is none.

    for i in 0..spec.cpus {
        let mut e = [0u8; PROCESSOR_LEN];
        e[0] = ENTRY_PROCESSOR;
        e[1] = i as u8;
        e[2] = LAPIC_VERSION;
        e[3] = CPU_ENABLED | if i == 0 { CPU_BSP } else { 0 };
        put_u32(&mut e, 4, spec.cpu.signature & 0xfff);
        put_u32(&mut e, 8, spec.cpu.features);
        t.extend_from_slice(&e);
    }
    for (id, name) in [(PCI_BUS_ID, b"PCI   "), (ISA_BUS_ID, b"ISA   ")] {
        t.extend_from_slice(&[ENTRY_BUS, id]);
        t.extend_from_slice(name);
    }
    t.extend_from_slice(&[ENTRY_IOAPIC, IOAPIC_ID, IOAPIC_VERSION, IOAPIC_ENABLED]);
    t.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for e in isa_entries() {
        t.extend_from_slice(&e);
    }
    for x in &spec.pci_intx {
        // PCI source IRQ: device number in bits 2–6, INTx (0 = A) in 0–1.
        let irq = (x.slot << 2) | (x.pin - 1);
        t.extend_from_slice(&int_entry(
            ENTRY_IO_INT,
            INT_INT,
            0,
            PCI_BUS_ID,
            irq,
            IOAPIC_ID,
            x.ioapic_pin,
        ));
    }
    for (int_type, lint) in [(INT_EXTINT, 0), (INT_NMI, 1)] {
        t.extend_from_slice(&int_entry(ENTRY_LOCAL_INT, int_type, 0, 0, 0, 0xff, lint));
    }
    debug_assert_eq!(t.len(), total);
    t[h + 7] = checksum(&t[h..]);
    Ok(t)
}

/// Builds the table for `spec` and writes it at [`MPTABLE_BASE`].
pub fn write<M: GuestMemoryBackend>(mem: &M, spec: &MpTableSpec) -> Result<(), MpTableError> {
    let bytes = build(spec)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_BASE))
        .map_err(|e| MpTableError::GuestMemory(e.to_string()))
}

#[cfg(test)]
#[path = "mptable_tests.rs"]
mod tests;
