//! bhyve's `nvme` emulation on KVM: its options checked as
//! `pci_nvme_parse_config` does (same messages), the backing store
//! opened (a file or block device through the block backend, or
//! `ram=MiB`), and the controller built.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use bhyve_backends::block::{BlockOptions, Blockif};
use bhyve_config::Config;
use bhyve_devices::blockif::BlockIo;
use bhyve_devices::nvme::{default_eui64, Dsm, NvmeParams, NvmePci};
use vm_memory::GuestMemoryMmap;

use crate::virtio::{block_spec, BlkSpec};
use crate::MachineError;

/// Where the namespace's blocks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmeBacking {
    /// `ram=size_in_MiB`: a RAM disk (4 KiB blocks unless `sectsz=`).
    Ram(u64),
    /// A file or block device with the block-device-options.
    Block(BlkSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeSpec {
    pub params: NvmeParams,
    /// `sectsz=` when it is one bhyve accepts (512, 4096, 8192).
    pub sectsz: Option<u32>,
    pub backing: NvmeBacking,
}

/// C's atoi: leading blanks, a sign, digits; anything else ends it.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |a, d| {
            a.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// C's strtoull(s, NULL, 0) for eui64: 0x hex, leading 0 octal.
fn strtoull0(s: &str) -> u64 {
    let s = s.trim();
    let (radix, body) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    u64::from_str_radix(&body[..end], radix).unwrap_or(0)
}

/// `(bus, slot, func)` of a `pci.B.S.F` node.
fn bsf(node: &str) -> (u8, u8, u8) {
    let v: Vec<u8> = node
        .split('.')
        .skip(1)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
        v.get(2).copied().unwrap_or(0),
    )
}

/// The nvme spec of node `node` (bhyve's messages; status 4).
pub fn nvme_spec(cfg: &Config, node: &str) -> Result<NvmeSpec, MachineError> {
    let (bus, slot, func) = bsf(node);
    let mut p = NvmeParams::bhyve_defaults(slot, func);
    let get = |k: &str| cfg.get_in(node, k);
    if let Some(v) = get("maxq") {
        let n = atoi(&v);
        // bhyve falls back to its maximum for anything out of range.
        p.max_queues = if (1..=i64::from(bhyve_devices::nvme::MAX_QUEUES)).contains(&n) {
            n as u16
        } else {
            bhyve_devices::nvme::MAX_QUEUES
        };
    }
    if let Some(v) = get("qsz") {
        let n = atoi(&v);
        if n <= 0 {
            return Err(MachineError::new(format!("nvme: Invalid qsz option {n}")));
        }
        if !(2..=65536).contains(&n) {
            return Err(MachineError::new(format!(
                "nvme: Invalid qsz option {n} (2 to 65536 entries)"
            )));
        }
        p.queue_entries = n as u32;
    }
    if let Some(v) = get("ioslots") {
        let n = atoi(&v);
        if n <= 0 {
            return Err(MachineError::new(format!("Invalid ioslots option {n}")));
        }
        p.ioslots = n.min(i64::from(u32::MAX)) as u32;
    }
    let sectsz = get("sectsz")
        .map(|v| atoi(&v))
        .filter(|n| matches!(n, 512 | 4096 | 8192))
        .map(|n| n as u32);
    if let Some(s) = get("ser") {
        p.serial = s;
    }
    if let Some(e) = get("eui64") {
        p.eui64 = strtoull0(&e);
    }
    if p.eui64 == 0 {
        p.eui64 = default_eui64(&cfg.get("name").unwrap_or_default(), bus, slot, func, 1);
    }
    if let Some(d) = get("dsm") {
        // bhyve ignores other values (the default stays).
        p.dsm = match d.as_str() {
            "enable" => Dsm::Enable,
            "disable" => Dsm::Disable,
            _ => Dsm::Auto,
        };
    }
    let backing = match get("ram") {
        Some(r) => {
            let mib = strtoull_dec(&r);
            if mib == 0 || mib > (1 << 24) {
                return Err(MachineError::new("nvme: Unable to allocate RAM".into()));
            }
            NvmeBacking::Ram(mib)
        }
        None => {
            let path = get("path")
                .ok_or_else(|| MachineError::new("Missing \"path\" for block device.".into()))?;
            NvmeBacking::Block(block_spec(cfg, node, path)?)
        }
    };
    Ok(NvmeSpec {
        params: p,
        sectsz,
        backing,
    })
}

/// strtoull(s, NULL, 10).
fn strtoull_dec(s: &str) -> u64 {
    let s = s.trim_start();
    s.bytes().take_while(u8::is_ascii_digit).fold(0u64, |a, d| {
        a.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// A RAM disk of `mib` MiB: an anonymous memory file behind the block
/// backend (sparse like bhyve's calloc, discard punches holes).
fn ram_disk(mib: u64, ident: &str) -> Result<Blockif, MachineError> {
    let err = |e: std::io::Error| MachineError::new(format!("nvme: Unable to allocate RAM: {e}"));
    // SAFETY: the name is a NUL-terminated string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"bhyve-nvme-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(mib << 20).map_err(err)?;
    let opts = BlockOptions {
        path: format!("/proc/self/fd/{}", file.as_raw_fd()),
        read_only: false,
        nocache: false,
        sync: false,
        nodelete: false,
        sector_size: None,
    };
    // The backend opens its own descriptor of the same memory file.
    Blockif::open(&opts, ident).map_err(|e| MachineError::new(format!("nvme: {e}")))
}

/// Builds the controller of `spec` over guest memory `mem`.
pub fn nvme_device(
    spec: &NvmeSpec,
    mem: &GuestMemoryMmap,
    ident: &str,
) -> Result<Arc<Mutex<NvmePci>>, MachineError> {
    let mut params = spec.params.clone();
    let backend: Arc<dyn BlockIo> = match &spec.backing {
        NvmeBacking::Ram(mib) => {
            params.sector_size = spec.sectsz.unwrap_or(4096);
            Arc::new(ram_disk(*mib, ident)?)
        }
        NvmeBacking::Block(b) => {
            let be = Blockif::open(&b.opts, &b.ident).map_err(|e| {
                MachineError::new(format!("nvme: Could not open backing file: {e}"))
            })?;
            params.sector_size = spec.sectsz.unwrap_or(be.info().sector_size);
            Arc::new(be)
        }
    };
    NvmePci::new_shared(params, backend, mem.clone())
        .map_err(|e| MachineError::new(format!("nvme: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::config as cfg;

    #[test]
    fn options_as_bhyve_parses_them() {
        let c = cfg(&[
            ("name", "vm1"),
            ("pci.0.4.0.ram", "64"),
            ("pci.0.4.0.maxq", "4"),
            ("pci.0.4.0.qsz", "256"),
            ("pci.0.4.0.ioslots", "32"),
            ("pci.0.4.0.sectsz", "512"),
            ("pci.0.4.0.ser", "ABC123"),
            ("pci.0.4.0.eui64", "0x1234"),
            ("pci.0.4.0.dsm", "disable"),
        ]);
        let s = nvme_spec(&c, "pci.0.4.0").unwrap();
        assert_eq!(s.backing, NvmeBacking::Ram(64));
        assert_eq!(s.params.max_queues, 4);
        assert_eq!(s.params.queue_entries, 256);
        assert_eq!(s.params.ioslots, 32);
        assert_eq!(s.sectsz, Some(512));
        assert_eq!(s.params.serial, "ABC123");
        assert_eq!(s.params.eui64, 0x1234);
        assert_eq!(s.params.dsm, Dsm::Disable);
        // Defaults: bhyve's serial and EUI-64, maxq out of range → 16,
        // an unsupported sectsz ignored.
        let c = cfg(&[
            ("name", "vm1"),
            ("pci.0.5.0.ram", "1"),
            ("pci.0.5.0.maxq", "99"),
            ("pci.0.5.0.sectsz", "1024"),
        ]);
        let s = nvme_spec(&c, "pci.0.5.0").unwrap();
        assert_eq!(s.params.serial, "NVME-5-0");
        assert_eq!(s.params.max_queues, 16);
        assert_eq!(s.sectsz, None);
        assert_eq!(s.params.eui64, default_eui64("vm1", 0, 5, 0, 1));
    }

    #[test]
    fn bad_options_fail_with_bhyve_messages() {
        let msg =
            |pairs: &[(&str, &str)]| nvme_spec(&cfg(pairs), "pci.0.4.0").unwrap_err().to_string();
        assert_eq!(
            msg(&[("pci.0.4.0.ram", "1"), ("pci.0.4.0.qsz", "0")]),
            "nvme: Invalid qsz option 0"
        );
        assert_eq!(
            msg(&[("pci.0.4.0.ram", "1"), ("pci.0.4.0.ioslots", "-3")]),
            "Invalid ioslots option -3"
        );
        assert_eq!(msg(&[]), "Missing \"path\" for block device.");
        assert_eq!(
            msg(&[("pci.0.4.0.ram", "0")]),
            "nvme: Unable to allocate RAM"
        );
        let s = nvme_spec(
            &cfg(&[("pci.0.4.0.path", "/nonexistent/disk")]),
            "pci.0.4.0",
        )
        .unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 1 << 20)]).unwrap();
        let e = nvme_device(&s, &mem, "0.4.0").err().unwrap().to_string();
        assert!(e.starts_with("nvme: Could not open backing file: "), "{e}");
    }

    #[test]
    fn ram_backing_builds() {
        let s = nvme_spec(&cfg(&[("pci.0.4.0.ram", "2")]), "pci.0.4.0").unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 1 << 20)]).unwrap();
        let f = nvme_device(&s, &mem, "0.4.0").unwrap();
        use bhyve_devices::pci::PciDevice;
        assert_eq!(f.lock().unwrap().config().vendor_device(), (0xfb5d, 0x0a0a));
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(atoi(" 12abc"), 12);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("-4"), -4);
        assert_eq!(strtoull0("0x10"), 16);
        assert_eq!(strtoull0("010"), 8);
        assert_eq!(strtoull0("99z"), 99);
        assert_eq!(strtoull_dec("16MiB"), 16);
    }
}
