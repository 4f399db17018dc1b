//! The data structures the admin commands return: Identify Controller,
//! Identify Namespace, the namespace lists and descriptors, and the log
//! pages (SMART / health, firmware slot, changed namespaces), with
//! bhyve's values (pci_nvme.c) where it has some.

use super::spec::{io, Command, Status};

/// PCI and controller identity (bhyve's: FreeBSD's NVMe vendor 0xfb5d).
pub const VENDOR: u16 = 0xfb5d;
pub const DEVICE: u16 = 0x0a0a;
pub const MODEL: &str = "bhyve-NVMe";
pub const FIRMWARE: &str = "1.0";
/// FreeBSD's IEEE OUI, as bhyve reports it.
const IEEE_OUI: [u8; 3] = [0x58, 0x9c, 0xfc];
/// Maximum data transfer: 2^9 pages (2 MiB), bhyve's MDTS.
pub const MDTS: u8 = 9;
pub const MAX_TRANSFER: u64 = (1 << MDTS) * super::spec::PAGE;
/// Asynchronous Event Request Limit (zero-based), bhyve's.
pub const AERL: u8 = 4;
/// Composite temperature we report: 296 K, as bhyve.
pub const TEMPERATURE: u16 = 296;
/// Warning composite temperature threshold (343 K), also the default
/// over-temperature threshold of the Temperature Threshold feature.
pub const WCTEMP: u16 = 0x157;

/// ONCS bits.
pub const ONCS_DSM: u16 = 1 << 2;
pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;

pub const IDENTIFY_SIZE: usize = 4096;

/// What the identify data depends on.
#[derive(Debug, Clone)]
pub struct Identity {
    /// 20 bytes, space padded (`ser=`, default `NVME-<slot>-<func>`).
    pub serial: String,
    pub eui64: u64,
    /// Namespace size in logical blocks and log2 of the block size.
    pub blocks: u64,
    pub lba_shift: u32,
    pub oncs: u16,
    pub read_only: bool,
    /// Deallocated blocks read as zeroes (the backend punches holes).
    pub dealloc_zeroes: bool,
    /// I/O queues the controller offers (`maxq`).
    pub max_queues: u16,
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// `s` space-padded (or cut) to `n` bytes of 7-bit ASCII.
fn padded(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().filter(|c| c.is_ascii()).take(n).collect();
    v.resize(n, b' ');
    v
}

impl Identity {
    pub fn controller(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        put(&mut b, 0, &VENDOR.to_le_bytes());
        put(&mut b, 4, &padded(&self.serial, 20));
        put(&mut b, 24, &padded(MODEL, 40));
        put(&mut b, 64, &padded(FIRMWARE, 8));
        b[72] = 4; // RAB
        put(&mut b, 73, &IEEE_OUI);
        b[77] = MDTS;
        put(&mut b, 80, &super::regs::VERSION.to_le_bytes());
        // OAES: namespace attribute notices.
        put(&mut b, 92, &(1u32 << 8).to_le_bytes());
        b[111] = 1; // CNTRLTYPE: I/O controller
                    // OACS: Format NVM.
        put(&mut b, 256, &(1u16 << 1).to_le_bytes());
        b[258] = 2; // ACL (zero-based)
        b[259] = AERL;
        // FRMW: slot 1 read-only, one slot.
        b[260] = 1 | (1 << 1);
        // LPA: SMART per namespace not supported; extended data for Get
        // Log Page (offsets).
        b[261] = 1 << 2;
        b[262] = 0; // ELPE: one error log entry (zero-based)
        put(&mut b, 266, &WCTEMP.to_le_bytes());
        put(&mut b, 268, &WCTEMP.to_le_bytes());
        // SANICAP: must not be 0 for 1.4; no sanitize, NODMMAS = 2.
        put(&mut b, 328, &(2u32 << 30).to_le_bytes());
        b[512] = 0x66; // SQES: 64 bytes
        b[513] = 0x44; // CQES: 16 bytes
        put(&mut b, 516, &1u32.to_le_bytes()); // NN
        put(&mut b, 520, &self.oncs.to_le_bytes());
        b[524] = 1; // FNA: format applies to all namespaces
                    // VWC present: the backend has a cache that Flush makes stable.
        b[525] = 1;
        // SGLS: 0, PRPs only (as bhyve).
        // Power state 0: "not reported" (all zero), as bhyve.
        b
    }

    pub fn namespace(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        put(&mut b, 0, &self.blocks.to_le_bytes()); // NSZE
        put(&mut b, 8, &self.blocks.to_le_bytes()); // NCAP
        put(&mut b, 16, &self.blocks.to_le_bytes()); // NUSE
        b[25] = 0; // NLBAF: one format
        b[26] = 0; // FLBAS
                   // DLFEAT: deallocated blocks read as zeroes; Write Zeroes may
                   // deallocate.
        if self.dealloc_zeroes {
            b[33] = 0x1 | (1 << 3);
        }
        // NSATTR: write protected.
        b[99] = u8::from(self.read_only);
        put(&mut b, 120, &self.eui64.to_be_bytes());
        // LBA format 0: LBADS.
        put(&mut b, 128, &(self.lba_shift << 16).to_le_bytes());
        b
    }

    /// Active namespace IDs above `nsid`.
    pub fn active_ns_list(&self, nsid: u32) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        if nsid < 1 {
            put(&mut b, 0, &1u32.to_le_bytes());
        }
        b
    }

    /// Namespace identification descriptors of namespace 1: its EUI-64.
    pub fn ns_descriptors(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        b[0] = 1; // NIDT: IEEE EUI-64
        b[1] = 8;
        put(&mut b, 4, &self.eui64.to_be_bytes());
        b
    }
}

/// bhyve's default EUI-64: FreeBSD's NVMe OUI-based prefix with a CRC-16
/// of the VM name and PCI address, then the namespace ID in the low 16
/// bits.
pub fn default_eui64(vm_name: &str, bus: u8, slot: u8, func: u8, nsid: u32) -> u64 {
    /// OUI_FREEBSD_NVME_LOW (sys/net/ieee_oui.h).
    const OUI_FREEBSD_NVME_LOW: u64 = 0x589c_fc20_0000;
    let data = format!("{vm_name}{bus}{slot}{func}");
    let crc = crc16(0, data.as_bytes());
    ((OUI_FREEBSD_NVME_LOW | u64::from(crc)) << 16) | u64::from(nsid & 0xffff)
}

/// CRC-16 with polynomial 0x8005, reflected (the ext2 variant bhyve uses).
fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xa001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Host counters behind the SMART / health log.
#[derive(Debug, Clone, Default)]
pub struct Smart {
    /// In units of 512 bytes (the log reports thousands, rounded up).
    pub read_sectors: u128,
    pub write_sectors: u128,
    pub read_commands: u128,
    pub write_commands: u128,
    pub critical_warning: u8,
}

impl Smart {
    /// Counts a finished read or write of `cmd` (`block` bytes per
    /// block; 0 counts the command only, as for one that failed early).
    pub fn account(&mut self, cmd: &Command, status: Status, block: u64) {
        let blocks = u128::from((cmd.cdw12 & 0xffff) + 1);
        let sectors = blocks * u128::from(block) / 512;
        match cmd.opc {
            io::READ => {
                self.read_commands += 1;
                if status.is_success() {
                    self.read_sectors += sectors;
                }
            }
            io::WRITE => {
                self.write_commands += 1;
                if status.is_success() {
                    self.write_sectors += sectors;
                }
            }
            _ => {}
        }
    }
}

pub const LOG_ERROR: u8 = 0x01;
pub const LOG_SMART: u8 = 0x02;
pub const LOG_FIRMWARE: u8 = 0x03;
pub const LOG_CHANGED_NS: u8 = 0x04;

/// The log page `lid`, or None when it is not supported here (the error
/// information log is kept with the asynchronous events, `aen.rs`).
pub fn log_page(lid: u8, smart: &Smart) -> Option<Vec<u8>> {
    Some(match lid {
        LOG_SMART => {
            let mut b = vec![0u8; 512];
            b[0] = smart.critical_warning;
            put(&mut b, 1, &TEMPERATURE.to_le_bytes());
            b[3] = 100; // available spare
            b[4] = 10; // threshold
            let units = |s: u128| s.div_ceil(1000);
            put(&mut b, 32, &units(smart.read_sectors).to_le_bytes());
            put(&mut b, 48, &units(smart.write_sectors).to_le_bytes());
            put(&mut b, 64, &smart.read_commands.to_le_bytes());
            put(&mut b, 80, &smart.write_commands.to_le_bytes());
            put(&mut b, 112, &1u128.to_le_bytes()); // power cycles
            b
        }
        LOG_FIRMWARE => {
            let mut b = vec![0u8; 512];
            b[0] = 1; // active slot 1
            put(&mut b, 8, &padded(FIRMWARE, 8));
            b
        }
        LOG_CHANGED_NS => vec![0u8; 4096],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            serial: "SER-42".into(),
            eui64: 0x0102_0304_0506_0708,
            blocks: 1000,
            lba_shift: 12,
            oncs: ONCS_DSM | ONCS_WRITE_ZEROES,
            read_only: true,
            dealloc_zeroes: true,
            max_queues: 4,
        }
    }

    #[test]
    fn controller_fields() {
        let c = id().controller();
        assert_eq!(&c[0..2], &[0x5d, 0xfb]);
        assert_eq!(&c[4..24], b"SER-42              ");
        assert_eq!(&c[24..34], b"bhyve-NVMe");
        assert_eq!(c[34], b' ');
        assert_eq!(c[77], 9);
        assert_eq!(u32::from_le_bytes(c[516..520].try_into().unwrap()), 1);
        assert_eq!(u16::from_le_bytes([c[520], c[521]]), 0xc);
        assert_eq!((c[512], c[513]), (0x66, 0x44));
        // A serial longer than 20 bytes is cut.
        let mut long = id();
        long.serial = "x".repeat(30);
        assert_eq!(&long.controller()[4..24], "x".repeat(20).as_bytes());
    }

    #[test]
    fn namespace_fields() {
        let n = id().namespace();
        assert_eq!(u64::from_le_bytes(n[0..8].try_into().unwrap()), 1000);
        assert_eq!(n[130], 12, "LBADS");
        assert_eq!(n[99], 1, "write protected");
        assert_eq!(&n[120..128], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&id().active_ns_list(0)[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(id().active_ns_list(1).iter().all(|b| *b == 0));
        let d = id().ns_descriptors();
        assert_eq!(&d[0..4], &[1, 8, 0, 0]);
        assert_eq!(&d[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn eui64_and_logs() {
        // CRC-16/ARC of "123456789" is 0xbb3d.
        assert_eq!(crc16(0, b"123456789"), 0xbb3d);
        let e = default_eui64("vm", 0, 4, 0, 1);
        assert_eq!(e >> 40, 0x0058_9cfc);
        assert_eq!(e & 0xffff, 1);
        assert_ne!(e, default_eui64("vm", 0, 5, 0, 1));
        let s = Smart {
            read_sectors: 1001,
            ..Default::default()
        };
        let l = log_page(LOG_SMART, &s).unwrap();
        assert_eq!(l[32], 2, "data units round up");
        assert_eq!(u16::from_le_bytes([l[1], l[2]]), 296);
        assert!(log_page(0x7f, &s).is_none());
        assert_eq!(log_page(LOG_FIRMWARE, &s).unwrap()[0], 1);
    }
}
