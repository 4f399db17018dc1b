//! The HBA driven through its PCI interface as a driver would: command
//! lists, FIS areas and PRDTs in a fake guest memory, RAM disks behind
//! the ports.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::port::*;
use super::*;
use crate::blockif::BlockOp;
use crate::pci::{MsiMessage, PciInterrupts};
use crate::ramdisk::{Completion, Options, RamDisk};

const MEM: usize = 8 << 20;
pub(super) const DATA: u64 = 0x40_0000;

#[derive(Default)]
pub(super) struct RecIrq {
    pub msi: AtomicUsize,
    pub intx: AtomicBool,
}

impl PciInterrupts for RecIrq {
    fn set_intx(&self, a: bool) {
        self.intx.store(a, Ordering::SeqCst);
    }
    fn route_msi(&self, _: u16, _: Option<MsiMessage>) {}
    fn fire_msi(&self, _: u16) {
        self.msi.fetch_add(1, Ordering::SeqCst);
    }
}

pub(super) struct Hba {
    pub f: Arc<Mutex<Ahci>>,
    pub mem: GuestMemoryMmap,
    pub disks: Vec<Arc<RamDisk>>,
    pub irq: Arc<RecIrq>,
}

pub(super) fn ident() -> Ident {
    Ident {
        serial: "SER-123".into(),
        model: "TEST MODEL".into(),
        revision: "R1".into(),
        nmrr: 1,
    }
}

pub(super) fn pbase(p: usize) -> u64 {
    0x100 + 0x80 * p as u64
}

fn clb(p: usize) -> u64 {
    0x1_0000 + p as u64 * 0x1000
}

pub(super) fn fb(p: usize) -> u64 {
    clb(p) + 0x800
}

fn ctba(p: usize, slot: u8) -> u64 {
    0x10_0000 + p as u64 * 0x2_0000 + u64::from(slot) * 0x1000
}

impl Hba {
    /// Ports: (number, atapi, disk size, info).
    pub fn new(ports: &[(usize, bool, usize, BlockInfo)]) -> Hba {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let mut disks = Vec::new();
        let mut drives = Vec::new();
        for &(n, atapi, size, info) in ports {
            let worker = Options {
                completion: Completion::Worker,
                strict: false,
            };
            let d = RamDisk::new(vec![0; size], info, worker).unwrap();
            d.with_data(|v| {
                for (i, b) in v.iter_mut().enumerate() {
                    *b = (i / 512) as u8 ^ (i as u8);
                }
            });
            disks.push(d.clone());
            drives.push((n, Drive::new(d, atapi, ident())));
        }
        let f = Ahci::new_shared(drives, mem.clone()).unwrap();
        let irq = Arc::new(RecIrq::default());
        f.lock().unwrap().config_mut().set_interrupts(irq.clone());
        Hba { f, mem, disks, irq }
    }

    pub fn disk(n: usize) -> Hba {
        Hba::new(&[(n, false, 1 << 20, RamDisk::info_rw())])
    }

    pub fn r(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.f.lock().unwrap().bar_read(ABAR, off, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn w(&self, off: u64, v: u32) {
        self.f
            .lock()
            .unwrap()
            .bar_write(ABAR, off, &v.to_le_bytes());
    }

    pub fn enable_msi(&self) {
        let mut f = self.f.lock().unwrap();
        f.config_mut().write(0x42, &[1, 0]);
        assert!(f.config().msi_enabled());
    }

    /// Sets up port `p`'s lists and starts it.
    pub fn start(&self, p: usize) {
        let b = pbase(p);
        self.w(b + P_CLB, clb(p) as u32);
        self.w(b + P_FB, fb(p) as u32);
        self.w(b + P_CMD, CMD_FRE | CMD_SUD | CMD_POD);
        self.w(b + P_CMD, CMD_FRE | CMD_ST | CMD_SUD | CMD_POD);
        self.w(b + P_IE, 0xffff_ffff);
        self.w(GHC, GHC_IE | GHC_AE);
    }

    /// Writes slot `slot`'s header, FIS, ACMD and PRDT (no issue).
    pub fn prepare(&self, p: usize, slot: u8, cfis: &[u8], acmd: &[u8], prdt: &[(u64, u32)]) {
        let hdr_at = clb(p) + u64::from(slot) * 32;
        let t = ctba(p, slot);
        let flags: u16 = 5 | if acmd.is_empty() { 0 } else { 1 << 5 };
        let mut h = [0u8; 32];
        h[0..2].copy_from_slice(&flags.to_le_bytes());
        h[2..4].copy_from_slice(&(prdt.len() as u16).to_le_bytes());
        h[8..16].copy_from_slice(&t.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(hdr_at)).unwrap();
        let mut table = vec![0u8; 0x80];
        table[..cfis.len()].copy_from_slice(cfis);
        table[0x40..0x40 + acmd.len()].copy_from_slice(acmd);
        for &(a, n) in prdt {
            let mut e = [0u8; 16];
            e[..8].copy_from_slice(&a.to_le_bytes());
            e[12..].copy_from_slice(&(n - 1).to_le_bytes());
            table.extend_from_slice(&e);
        }
        self.mem.write_slice(&table, GuestAddress(t)).unwrap();
    }

    pub fn issue(&self, p: usize, slot: u8, cfis: &[u8], acmd: &[u8], prdt: &[(u64, u32)]) {
        self.prepare(p, slot, cfis, acmd, prdt);
        self.w(pbase(p) + P_CI, 1 << slot);
    }

    pub fn wait(&self, what: &str, f: impl Fn(&Hba) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(t.elapsed() < Duration::from_secs(10), "timeout: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Issues and waits until the slot leaves PxCI or the port errs.
    pub fn run(&self, p: usize, slot: u8, cfis: &[u8], acmd: &[u8], prdt: &[(u64, u32)]) -> u32 {
        self.issue(p, slot, cfis, acmd, prdt);
        self.wait("command done", |h| {
            h.r(pbase(p) + P_CI) & (1 << slot) == 0 || h.r(pbase(p) + P_IS) & IS_TFES != 0
        });
        self.r(pbase(p) + P_TFD)
    }

    pub fn read_mem(&self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    pub fn prdbc(&self, p: usize, slot: u8) -> u32 {
        self.mem
            .read_obj(GuestAddress(clb(p) + u64::from(slot) * 32 + 4))
            .unwrap()
    }

    /// Recovers from an error as a driver does: stop, clear, start.
    pub fn recover(&self, p: usize) {
        let b = pbase(p);
        self.w(b + P_CMD, CMD_FRE);
        self.wait("CR clear", |h| h.r(b + P_CMD) & CMD_CR == 0);
        assert_eq!(self.r(b + P_CI), 0);
        self.w(b + P_IS, 0xffff_ffff);
        self.w(b + P_SERR, 0xffff_ffff);
        self.w(b + P_CMD, CMD_FRE | CMD_CLO);
        self.w(b + P_CMD, CMD_FRE | CMD_ST);
    }
}

/// A register H2D FIS for `cmd` at `lba` for `count` sectors.
pub(super) fn fis(cmd: u8, lba: u64, count: u16) -> [u8; 20] {
    let mut f = [0u8; 20];
    f[0] = FIS_H2D;
    f[1] = 0x80;
    f[2] = cmd;
    f[4] = lba as u8;
    f[5] = (lba >> 8) as u8;
    f[6] = (lba >> 16) as u8;
    f[7] = 0x40;
    f[8] = (lba >> 24) as u8;
    f[9] = (lba >> 32) as u8;
    f[10] = (lba >> 40) as u8;
    f[12] = count as u8;
    f[13] = (count >> 8) as u8;
    f
}

/// An FPDMA QUEUED FIS: the count is in the feature bytes, the tag in
/// the count.
fn ncq_fis(cmd: u8, lba: u64, count: u16, tag: u8) -> [u8; 20] {
    let mut f = fis(cmd, lba, 0);
    f[3] = count as u8;
    f[11] = (count >> 8) as u8;
    f[12] = tag << 3;
    f
}

fn pattern(disk: &RamDisk, off: usize, n: usize) -> Vec<u8> {
    disk.with_data(|v| v[off..off + n].to_vec())
}

#[test]
fn pci_identity_and_global_registers() {
    let h = Hba::new(&[
        (0, false, 1 << 20, RamDisk::info_rw()),
        (2, true, 1 << 20, RamDisk::info_rw()),
    ]);
    {
        let f = h.f.lock().unwrap();
        assert_eq!(f.config().vendor_device(), (0x8086, 0x2821));
        let mut c = [0u8; 4];
        f.config().read(0x08, &mut c);
        assert_eq!(&c[1..], &[0x01, 0x06, 0x01]);
        // 6 ports (ICH8's minimum): 0x100 + 6 * 0x80, rounded up.
        assert_eq!(f.config().bar_size(ABAR), 0x400);
        assert_eq!(f.ports(), 6);
    }
    let cap = h.r(CAP);
    assert_eq!(cap & 0x1f, 5, "NP");
    assert_eq!((cap >> 8) & 0x1f, 31, "32 slots");
    assert_ne!(cap & (1 << 30), 0, "NCQ");
    assert_ne!(cap & (1 << 31), 0, "64-bit");
    assert_eq!(h.r(PI), 0b101);
    assert_eq!(h.r(VS), 0x10300);
    assert_eq!(h.r(GHC), GHC_AE);
    // Byte reads see their part of a register.
    let mut b = [0u8; 1];
    h.f.lock().unwrap().bar_read(ABAR, VS + 1, &mut b);
    assert_eq!(b[0], 0x03);
    // Signatures and link status: disk, empty port, CD.
    assert_eq!(h.r(pbase(0) + P_SIG), SIG_ATA);
    assert_eq!(h.r(pbase(0) + P_SSTS), 0x133);
    assert_eq!(h.r(pbase(0) + P_TFD) & 0xff, 0x70);
    assert_eq!(h.r(pbase(1) + P_SIG), 0xffff_ffff);
    assert_eq!(h.r(pbase(1) + P_SSTS), 0);
    assert_eq!(h.r(pbase(2) + P_SIG), SIG_ATAPI);
    assert_ne!(h.r(pbase(2) + P_CMD) & CMD_CPS, 0);
    // PxIE keeps only defined bits; PxCI is ignored while stopped.
    h.w(pbase(0) + P_IE, 0xffff_ffff);
    assert_eq!(h.r(pbase(0) + P_IE), 0xfdc0_00ff);
    h.w(pbase(0) + P_CI, 1);
    assert_eq!(h.r(pbase(0) + P_CI), 0);
    // Odd writes are ignored, 8-byte ones cover two registers.
    h.f.lock()
        .unwrap()
        .bar_write(ABAR, pbase(0) + P_CLB + 1, &[0xff]);
    h.f.lock().unwrap().bar_write(
        ABAR,
        pbase(0) + P_CLB,
        &0x1234_5678_9abc_dc00u64.to_le_bytes(),
    );
    assert_eq!(h.r(pbase(0) + P_CLB), 0x9abc_dc00);
    assert_eq!(h.r(pbase(0) + P_CLBU), 0x1234_5678);
    // Past the ports: zero.
    assert_eq!(h.r(0x7fc), 0);
    // HBA reset.
    h.w(GHC, GHC_IE);
    h.w(GHC, GHC_HR);
    assert_eq!(h.r(GHC), GHC_AE);
    assert_eq!(h.r(pbase(0) + P_IE), 0);
}

#[test]
fn thirty_two_ports() {
    let ports: Vec<_> = (0..32)
        .map(|i| (i, i % 2 == 1, 64 << 10, RamDisk::info_rw()))
        .collect();
    let h = Hba::new(&ports);
    assert_eq!(h.r(CAP) & 0x1f, 31);
    assert_eq!(h.r(PI), u32::MAX);
    assert_eq!(h.f.lock().unwrap().config().bar_size(ABAR), 0x2000);
    assert_eq!(h.r(pbase(31) + P_SIG), SIG_ATAPI);
    h.start(31);
    h.start(30);
    let tfd = h.run(30, 0, &fis(ata::READ_DMA48, 1, 1), &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
    assert_eq!(h.read_mem(DATA, 512), pattern(&h.disks[30], 512, 512));
    assert!(Ahci::new_shared(vec![], h.mem.clone()).is_ok());
    let d = || Drive::new(h.disks[0].clone(), false, ident());
    assert!(matches!(
        Ahci::new_shared(vec![(32, d())], h.mem.clone()),
        Err(AhciError::BadPort(32))
    ));
    assert!(matches!(
        Ahci::new_shared(vec![(1, d()), (1, d())], h.mem.clone()),
        Err(AhciError::DuplicatePort(1))
    ));
}

#[test]
fn identify_device() {
    let mut info = RamDisk::info_rw();
    info.sector_size = 4096;
    info.physical_sector_size = 4096;
    let h = Hba::new(&[(0, false, 8 << 20, info)]);
    h.enable_msi();
    h.start(0);
    let tfd = h.run(0, 3, &fis(ata::IDENTIFY, 0, 0), &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
    assert_eq!(h.prdbc(0, 3), 512);
    let id = h.read_mem(DATA, 512);
    let w = |i: usize| u16::from_le_bytes([id[2 * i], id[2 * i + 1]]);
    let s = |a: usize, b: usize| -> String {
        (a..b)
            .flat_map(|i| w(i).to_be_bytes())
            .map(char::from)
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    assert_eq!(s(10, 20), "SER-123");
    assert_eq!(s(23, 27), "R1");
    assert_eq!(s(27, 47), "TEST MODEL");
    assert_eq!(w(217), 1, "nmrr");
    assert_eq!(w(75), 31, "NCQ depth 32");
    assert_ne!(w(76) & 0x100, 0, "NCQ");
    assert_ne!(w(83) & 0x400, 0, "48-bit");
    let sectors = (0..4).fold(0u64, |a, k| a | (u64::from(w(100 + k)) << (16 * k)));
    assert_eq!(sectors, 2048);
    assert_eq!(w(169), 1, "TRIM");
    assert_eq!(w(106), 0x5000, "logical sectors above 512");
    assert_eq!(u32::from(w(117)) | (u32::from(w(118)) << 16), 2048);
    assert_eq!(id.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    assert_eq!(id[510], 0xa5);
    // The D2H FIS landed, DHRS rose and MSI fired.
    assert_eq!(h.read_mem(fb(0) + 0x40, 3), vec![0x34, 0x40, 0x50]);
    assert_ne!(h.r(pbase(0) + P_IS) & IS_DHRS, 0);
    assert_eq!(h.r(IS), 1);
    assert_eq!(h.irq.msi.load(Ordering::SeqCst), 1);
    // No PRDT: aborted.
    h.w(pbase(0) + P_IS, u32::MAX);
    h.w(IS, 1);
    let tfd = h.run(0, 4, &fis(ata::IDENTIFY, 0, 0), &[], &[]);
    assert_eq!(tfd, ABORT);
    assert_ne!(h.r(pbase(0) + P_IS) & IS_TFES, 0);
}

#[test]
fn identify_without_trim_on_read_only_disks() {
    let mut info = RamDisk::info_rw();
    info.read_only = true;
    let h = Hba::new(&[(0, false, 1 << 20, info)]);
    h.start(0);
    h.run(0, 0, &fis(ata::IDENTIFY, 0, 0), &[], &[(DATA, 512)]);
    let id = h.read_mem(DATA, 512);
    assert_eq!(u16::from_le_bytes([id[338], id[339]]), 0, "no TRIM");
    // Writes are refused.
    let tfd = h.run(0, 1, &fis(ata::WRITE_DMA48, 0, 1), &[], &[(DATA, 512)]);
    assert_eq!(tfd, ABORT);
}

#[test]
fn dma_read_write_round_trip() {
    let h = Hba::disk(0);
    h.start(0);
    // Write 8 sectors from three uneven segments.
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    h.mem
        .write_slice(&data[..1000], GuestAddress(DATA))
        .unwrap();
    h.mem
        .write_slice(&data[1000..3000], GuestAddress(DATA + 0x10000))
        .unwrap();
    h.mem
        .write_slice(&data[3000..], GuestAddress(DATA + 0x20000))
        .unwrap();
    let prdt = [(DATA, 1000), (DATA + 0x10000, 2000), (DATA + 0x20000, 1096)];
    let tfd = h.run(0, 0, &fis(ata::WRITE_DMA48, 100, 8), &[], &prdt);
    assert_eq!(tfd & 0xff, 0x50);
    assert_eq!(h.prdbc(0, 0), 4096);
    assert_eq!(pattern(&h.disks[0], 100 * 512, 4096), data);
    // Read it back through 28-bit READ DMA.
    let tfd = h.run(0, 1, &fis(0xc8, 100, 8), &[], &[(DATA + 0x40000, 4096)]);
    assert_eq!(tfd & 0xff, 0x50);
    assert_eq!(h.read_mem(DATA + 0x40000, 4096), data);
    // Out of range: IDNF.
    let tfd = h.run(0, 2, &fis(ata::READ_DMA48, 2047, 2), &[], &[(DATA, 1024)]);
    assert_eq!(tfd, (E_IDNF << 8) | S_READY | S_ERR);
}

#[test]
fn ncq_with_32_outstanding() {
    let h = Hba::disk(0);
    h.enable_msi();
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    for t in 0..32u8 {
        let f = ncq_fis(ata::READ_FPDMA, u64::from(t) * 2, 2, t);
        h.prepare(0, t, &f, &[], &[(DATA + u64::from(t) * 1024, 1024)]);
    }
    h.w(b + P_SACT, u32::MAX);
    h.w(b + P_CI, u32::MAX);
    // All accepted: PxCI empty, PxSACT full, 32 requests at the backend.
    assert_eq!(h.r(b + P_CI), 0);
    assert_eq!(h.r(b + P_SACT), u32::MAX);
    assert_eq!(h.disks[0].queued(), 32);
    assert_eq!(h.r(b + P_TFD) & 0x88, 0);
    h.disks[0].hold(false);
    h.wait("SACT empty", |h| h.r(b + P_SACT) == 0);
    assert_ne!(h.r(b + P_IS) & IS_SDBS, 0);
    assert_eq!(h.read_mem(fb(0) + 0x58, 2), vec![0xa1, 0x40]);
    assert_eq!(
        h.read_mem(DATA, 32 * 1024),
        pattern(&h.disks[0], 0, 32 * 1024)
    );
    assert!(h.irq.msi.load(Ordering::SeqCst) >= 1);
    // NCQ writes too.
    let data = vec![0x5a; 32 * 512];
    h.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    for t in 0..32u8 {
        let f = ncq_fis(ata::WRITE_FPDMA, 1000 + u64::from(t), 1, t);
        h.prepare(0, t, &f, &[], &[(DATA + u64::from(t) * 512, 512)]);
    }
    h.w(b + P_SACT, u32::MAX);
    h.w(b + P_CI, u32::MAX);
    h.wait("SACT empty", |h| h.r(b + P_SACT) == 0);
    assert_eq!(pattern(&h.disks[0], 1000 * 512, 32 * 512), data);
}

#[test]
fn flush_completes_after_the_backend() {
    let h = Hba::disk(0);
    h.start(0);
    h.disks[0].hold(true);
    h.issue(0, 5, &fis(ata::FLUSH48, 0, 0), &[], &[]);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.r(pbase(0) + P_CI), 1 << 5, "still in flight");
    assert_ne!(h.r(pbase(0) + P_TFD) & S_BUSY, 0);
    // A second command waits behind the busy flag.
    h.issue(0, 6, &fis(ata::CHECK_POWER_MODE, 0, 0), &[], &[]);
    assert_eq!(h.r(pbase(0) + P_CI), 3 << 5);
    h.disks[0].hold(false);
    h.wait("both done", |h| h.r(pbase(0) + P_CI) == 0);
    assert_eq!(h.disks[0].executed()[0].0, BlockOp::Flush);
    // CHECK POWER MODE answered "active" in the count.
    assert_eq!(h.read_mem(fb(0) + 0x40 + 12, 1), vec![0xff]);
}

#[test]
fn trim_through_dsm_and_send_fpdma() {
    let h = Hba::disk(0);
    h.start(0);
    let mut ranges = [0u8; 512];
    let entry = |lba: u64, n: u16| {
        let mut e = lba.to_le_bytes();
        e[6..].copy_from_slice(&n.to_le_bytes());
        e
    };
    ranges[..8].copy_from_slice(&entry(10, 4));
    ranges[8..16].copy_from_slice(&entry(100, 1));
    h.mem.write_slice(&ranges, GuestAddress(DATA)).unwrap();
    let mut f = fis(ata::DSM, 0, 1);
    f[3] = 1;
    let tfd = h.run(0, 0, &f, &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
    assert!(pattern(&h.disks[0], 10 * 512, 2048).iter().all(|b| *b == 0));
    assert!(pattern(&h.disks[0], 100 * 512, 512).iter().all(|b| *b == 0));
    assert_ne!(pattern(&h.disks[0], 14 * 512, 512), vec![0; 512]);
    let discards = h.disks[0]
        .executed()
        .iter()
        .filter(|l| l.0 == BlockOp::Discard)
        .count();
    assert_eq!(discards, 2);
    // Queued: SEND FPDMA QUEUED, DSM subcommand, TRIM.
    ranges[..8].copy_from_slice(&entry(200, 2));
    ranges[8..16].fill(0);
    h.mem.write_slice(&ranges, GuestAddress(DATA)).unwrap();
    let mut f = ncq_fis(ata::SEND_FPDMA, 0, 1, 7);
    f[16] = 1;
    h.prepare(0, 7, &f, &[], &[(DATA, 512)]);
    h.w(pbase(0) + P_SACT, 1 << 7);
    h.w(pbase(0) + P_CI, 1 << 7);
    h.wait("trim done", |h| h.r(pbase(0) + P_SACT) == 0);
    assert!(pattern(&h.disks[0], 200 * 512, 1024)
        .iter()
        .all(|b| *b == 0));
    // A range past the end.
    ranges[..8].copy_from_slice(&entry(2047, 2));
    h.mem.write_slice(&ranges, GuestAddress(DATA)).unwrap();
    let mut f = fis(ata::DSM, 0, 1);
    f[3] = 1;
    let tfd = h.run(0, 1, &f, &[], &[(DATA, 512)]);
    assert_eq!(tfd, (E_IDNF << 8) | S_READY | S_ERR);
}

#[test]
fn trim_refused_without_delete() {
    let mut info = RamDisk::info_rw();
    info.can_delete = false;
    let h = Hba::new(&[(0, false, 1 << 20, info)]);
    h.start(0);
    let mut f = fis(ata::DSM, 0, 1);
    f[3] = 1;
    assert_eq!(h.run(0, 0, &f, &[], &[(DATA, 512)]), ABORT);
    assert!(h.disks[0].executed().is_empty());
}

#[test]
fn bad_prdts_and_tables() {
    let h = Hba::disk(0);
    h.start(0);
    // No PRDT for a read: aborted, PxCI kept until the driver recovers.
    let tfd = h.run(0, 0, &fis(ata::READ_DMA48, 0, 1), &[], &[]);
    assert_eq!(tfd, ABORT);
    assert_eq!(h.r(pbase(0) + P_CI), 1);
    // Nothing else runs until then.
    h.issue(0, 1, &fis(ata::CHECK_POWER_MODE, 0, 0), &[], &[]);
    assert_eq!(h.r(pbase(0) + P_CI), 3);
    h.recover(0);
    // A segment outside guest RAM: the backend fails, so does the command.
    let tfd = h.run(0, 2, &fis(ata::READ_DMA48, 0, 1), &[], &[(1 << 40, 512)]);
    assert_eq!(tfd, ABORT);
    h.recover(0);
    // A command table outside RAM.
    let hdr_at = clb(0) + 3 * 32;
    h.prepare(0, 3, &fis(ata::READ_DMA48, 0, 1), &[], &[(DATA, 512)]);
    h.mem
        .write_obj(0xffff_ff00_0000_0000u64, GuestAddress(hdr_at + 8))
        .unwrap();
    h.w(pbase(0) + P_CI, 1 << 3);
    assert_eq!(h.r(pbase(0) + P_TFD), ABORT);
    h.recover(0);
    // Not a register FIS.
    let mut f = fis(ata::READ_DMA48, 0, 1);
    f[0] = 0x46;
    assert_eq!(h.run(0, 4, &f, &[], &[(DATA, 512)]), ABORT);
    h.recover(0);
    // Thousands of 2-byte entries: chunked on sector boundaries.
    let prdt: Vec<(u64, u32)> = (0..2048).map(|i| (DATA + i * 2, 2)).collect();
    h.prepare(0, 5, &fis(ata::READ_DMA48, 0, 8), &[], &[]);
    let t = ctba(0, 5);
    let mut table = Vec::new();
    for &(a, n) in &prdt {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&a.to_le_bytes());
        e[12..].copy_from_slice(&(n - 1).to_le_bytes());
        table.extend_from_slice(&e);
    }
    h.mem.write_slice(&table, GuestAddress(t + 0x80)).unwrap();
    h.mem
        .write_obj(2048u16, GuestAddress(clb(0) + 5 * 32 + 2))
        .unwrap();
    h.w(pbase(0) + P_CI, 1 << 5);
    h.wait("chunked read", |h| h.r(pbase(0) + P_CI) == 0);
    assert_eq!(h.r(pbase(0) + P_TFD) & 0xff, 0x50);
    assert_eq!(h.prdbc(0, 5), 4096);
    assert_eq!(h.read_mem(DATA, 4096), pattern(&h.disks[0], 0, 4096));
    let reads = h.disks[0]
        .executed()
        .iter()
        .filter(|l| l.0 == BlockOp::Read)
        .count();
    assert!(reads >= 8, "{reads} chunks");
}

#[test]
fn prdt_shorter_than_the_transfer_overflows() {
    // AHCI: more data than the PRDT describes is an overflow (PxIS.OFS)
    // and the command fails; nothing is moved when the table is known
    // short before the transfer starts.
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    let tfd = h.run(0, 6, &fis(ata::READ_DMA48, 0, 8), &[], &[(DATA, 1024)]);
    assert_eq!(tfd, ABORT);
    assert_ne!(h.r(b + P_IS) & IS_OFS, 0);
    assert_ne!(h.r(b + P_IS) & IS_TFES, 0);
    assert!(h.disks[0].submitted().is_empty());
    h.recover(0);
    // Found short after a first chunk of MAX_SEGS entries: that chunk
    // moved, PRDBC says so, the rest is not attempted.
    let n = prdt::MAX_SEGS as u64 + 10;
    let table: Vec<(u64, u32)> = (0..n).map(|i| (DATA + i * 512, 512)).collect();
    let tfd = h.run(0, 7, &fis(ata::READ_DMA48, 0, n as u16 + 1), &[], &table);
    assert_eq!(tfd, ABORT);
    assert_ne!(h.r(b + P_IS) & IS_OFS, 0);
    assert_eq!(h.disks[0].submitted().len(), 1);
    assert_eq!(h.prdbc(0, 7), prdt::MAX_SEGS as u32 * 512);
    h.recover(0);
    // Writes fail too (no OFS: nothing was received), queued ones as NCQ
    // errors.
    let f = ncq_fis(ata::WRITE_FPDMA, 0, 2, 3);
    h.prepare(0, 3, &f, &[], &[(DATA, 512)]);
    h.w(b + P_SACT, 1 << 3);
    h.w(b + P_CI, 1 << 3);
    assert_eq!(h.r(b + P_TFD), ABORT);
    assert_eq!(h.r(b + P_IS) & IS_OFS, 0);
    assert_eq!(h.disks[0].submitted().len(), 1);
}

#[test]
fn ncq_error_log_and_set_features() {
    let h = Hba::disk(0);
    h.start(0);
    // An NCQ read out of range fails; page 10h then names it.
    let f = ncq_fis(ata::READ_FPDMA, 5000, 1, 9);
    h.prepare(0, 9, &f, &[], &[(DATA, 512)]);
    h.w(pbase(0) + P_SACT, 1 << 9);
    h.w(pbase(0) + P_CI, 1 << 9);
    assert_ne!(h.r(pbase(0) + P_IS) & IS_TFES, 0);
    h.recover(0);
    let mut f = fis(ata::READ_LOG_EXT, 0x10, 1);
    f[5] = 0;
    let tfd = h.run(0, 0, &f, &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
    let log = h.read_mem(DATA, 512);
    assert_eq!(log[0], 9, "the failed tag");
    assert_eq!((log[2], u32::from(log[3])), (0x41, E_IDNF));
    assert_eq!(log.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    // Directory and page 13h.
    h.run(0, 0, &fis(ata::READ_LOG_EXT, 0x13, 1), &[], &[(DATA, 512)]);
    assert_eq!(h.read_mem(DATA, 8), vec![1, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        h.run(0, 0, &fis(ata::READ_LOG_EXT, 0x30, 1), &[], &[(DATA, 512)]),
        ABORT
    );
    h.recover(0);
    // SET FEATURES: transfer mode shows in IDENTIFY; unknown aborts.
    let mut f = fis(0xef, 0, 0x45);
    f[3] = 0x03;
    assert_eq!(h.run(0, 1, &f, &[], &[]) & 0xff, 0x50);
    h.run(0, 2, &fis(ata::IDENTIFY, 0, 0), &[], &[(DATA, 512)]);
    assert_eq!(h.read_mem(DATA + 88 * 2, 2), vec![0x7f, 0x20]);
    f[3] = 0x66;
    assert_eq!(h.run(0, 3, &f, &[], &[]), ABORT);
    h.recover(0);
    // SET MULTIPLE: powers of two up to 128.
    assert_eq!(h.run(0, 4, &fis(0xc6, 0, 16), &[], &[]) & 0xff, 0x50);
    assert_eq!(h.run(0, 4, &fis(0xc6, 0, 3), &[], &[]), ABORT);
    h.recover(0);
    // Unknown command.
    assert_eq!(h.run(0, 5, &fis(0xfe, 0, 0), &[], &[]), ABORT);
}

#[test]
fn intx_when_msi_is_off() {
    let h = Hba::disk(0);
    h.start(0);
    h.run(0, 0, &fis(ata::CHECK_POWER_MODE, 0, 0), &[], &[]);
    assert!(h.irq.intx.load(Ordering::SeqCst));
    assert_eq!(h.r(IS), 1);
    // Clearing PxIS alone keeps the HBA's IS bit (and the line) up.
    h.w(pbase(0) + P_IS, u32::MAX);
    assert!(h.irq.intx.load(Ordering::SeqCst));
    h.w(IS, 1);
    assert!(!h.irq.intx.load(Ordering::SeqCst));
    // GHC.IE off: no interrupt, status still recorded.
    h.w(GHC, 0);
    h.run(0, 0, &fis(ata::CHECK_POWER_MODE, 0, 0), &[], &[]);
    assert!(!h.irq.intx.load(Ordering::SeqCst));
    h.w(GHC, GHC_IE);
    assert!(h.irq.intx.load(Ordering::SeqCst));
}

#[test]
fn reset_drops_in_flight_completions() {
    let h = Hba::disk(0);
    h.start(0);
    h.disks[0].hold(true);
    h.issue(0, 0, &fis(ata::READ_DMA48, 0, 1), &[], &[(DATA, 512)]);
    // Stop, then COMRESET with the request still at the backend.
    h.w(pbase(0) + P_CMD, CMD_FRE);
    assert_ne!(
        h.r(pbase(0) + P_CMD) & CMD_CR,
        0,
        "CR until the request ends"
    );
    h.w(pbase(0) + P_SCTL, 1);
    h.w(pbase(0) + P_SCTL, 0);
    // The device comes back once the old request is over.
    assert_eq!(h.r(pbase(0) + P_SIG), 0xffff_ffff);
    h.w(pbase(0) + P_IS, u32::MAX);
    h.disks[0].hold(false);
    h.wait("device ready", |h| h.r(pbase(0) + P_SIG) == SIG_ATA);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.r(pbase(0) + P_IS), 0, "stale completion ignored");
    // The port works after the reset.
    h.w(pbase(0) + P_CMD, CMD_FRE | CMD_ST);
    let tfd = h.run(0, 0, &fis(ata::READ_DMA48, 1, 1), &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
    // A function reset with a request in flight; dropping the HBA then
    // waits for nothing.
    h.disks[0].hold(true);
    h.issue(0, 1, &fis(ata::READ_DMA48, 1, 1), &[], &[(DATA, 512)]);
    h.f.lock().unwrap().reset();
    assert_eq!(h.r(pbase(0) + P_CI), 0);
    h.disks[0].hold(false);
}

#[test]
fn failed_command_without_fis_receive_is_not_reissued() {
    // FRE off: no FIS is received, yet the failed command must stop the
    // port (PxIS.TFES, PxCI kept) instead of being issued again and again.
    let h = Hba::disk(0);
    let b = pbase(0);
    h.w(b + P_CLB, clb(0) as u32);
    h.w(b + P_CMD, CMD_ST);
    h.w(b + P_IE, 0xffff_ffff);
    h.issue(0, 0, &fis(ata::READ_DMA48, 0, 1), &[], &[(1 << 40, 512)]);
    h.wait("request ran", |h| !h.disks[0].executed().is_empty());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.disks[0].executed().len(), 1, "issued again");
    assert_eq!(h.r(b + P_CI), 1);
    assert_eq!(h.r(b + P_TFD), ABORT);
    assert_ne!(h.r(b + P_IS) & IS_TFES, 0);
}

#[test]
fn ncq_write_with_fua_is_written_through() {
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    for (tag, fua) in [(3u8, true), (4, false)] {
        let mut f = ncq_fis(ata::WRITE_FPDMA, 10, 1, tag);
        if fua {
            f[7] |= 0x80;
        }
        h.prepare(0, tag, &f, &[], &[(DATA, 512)]);
        h.w(b + P_SACT, 1 << tag);
        h.w(b + P_CI, 1 << tag);
        h.wait("write done", |h| h.r(b + P_SACT) == 0);
    }
    let fua: Vec<bool> = h.disks[0].submitted().iter().map(|s| s.3).collect();
    assert_eq!(fua, vec![true, false]);
}

#[test]
fn soft_reset_does_not_rerun_dropped_commands() {
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    h.issue(0, 0, &fis(ata::READ_DMA48, 0, 1), &[], &[(DATA, 512)]);
    // CLO lets the control FISes pass the busy flag; SRST set, cleared.
    h.w(b + P_CMD, CMD_FRE | CMD_ST | CMD_CLO);
    let mut srst = [0u8; 20];
    srst[0] = FIS_H2D;
    srst[15] = 1 << 2;
    h.issue(0, 1, &srst, &[], &[]);
    srst[15] = 0;
    h.issue(0, 2, &srst, &[], &[]);
    h.disks[0].hold(false);
    h.wait("request ran", |h| !h.disks[0].executed().is_empty());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.disks[0].submitted().len(), 1, "dropped command ran again");
    assert_eq!(h.r(b + P_CI), 0);
    assert_eq!(h.r(b + P_SIG), SIG_ATA);
}

#[test]
fn reset_keeps_the_device_busy_until_old_requests_drained() {
    // A write still running at the backend when the guest resets the
    // port cannot be recalled: no new command may overtake it.
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.mem.write_slice(&[0x11; 512], GuestAddress(DATA)).unwrap();
    h.mem
        .write_slice(&[0x22; 512], GuestAddress(DATA + 0x1000))
        .unwrap();
    h.disks[0].hold(true);
    h.issue(0, 0, &fis(ata::WRITE_DMA48, 7, 1), &[], &[(DATA, 512)]);
    h.w(b + P_CMD, CMD_FRE);
    h.w(b + P_SCTL, 1);
    h.w(b + P_SCTL, 0);
    assert_eq!(h.r(b + P_CMD) & CMD_CR, 0);
    assert_eq!(h.r(b + P_SSTS) & 0xf, 3, "link up");
    assert_ne!(h.r(b + P_TFD) & S_BUSY, 0, "device busy");
    // Not even CLO lets a new command through.
    h.w(b + P_CMD, CMD_FRE | CMD_ST | CMD_CLO);
    h.issue(
        0,
        1,
        &fis(ata::WRITE_DMA48, 7, 1),
        &[],
        &[(DATA + 0x1000, 512)],
    );
    assert_eq!(h.disks[0].submitted().len(), 1, "overtook the old write");
    h.disks[0].hold(false);
    h.wait("new write done", |h| h.r(b + P_CI) == 0);
    assert_eq!(h.r(b + P_SIG), SIG_ATA);
    assert_eq!(h.r(b + P_TFD) & 0xff, 0x50);
    assert_eq!(h.disks[0].executed().len(), 2);
    assert_eq!(pattern(&h.disks[0], 7 * 512, 512), vec![0x22; 512]);
}

#[test]
fn prdbc_goes_to_the_header_the_command_came_from() {
    // The guest moves PxCLB while a read is in flight: its byte count
    // belongs in the header it was fetched from, not in the new list.
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    h.issue(0, 2, &fis(ata::READ_DMA48, 0, 1), &[], &[(DATA, 512)]);
    let moved = clb(0) + 0x400;
    h.mem
        .write_obj(0xdead_beefu32, GuestAddress(moved + 2 * 32 + 4))
        .unwrap();
    h.w(b + P_CLB, moved as u32);
    h.disks[0].hold(false);
    h.wait("read done", |h| h.r(b + P_CI) == 0);
    assert_eq!(h.prdbc(0, 2), 512);
    let other: u32 = h.mem.read_obj(GuestAddress(moved + 2 * 32 + 4)).unwrap();
    assert_eq!(other, 0xdead_beef, "PRDBC written into the new list");
}

/// Issues queued reads of one sector each: `tags` with a good buffer,
/// `bad` with one outside RAM (the backend fails it).
fn ncq_reads(h: &Hba, tags: &[u8], bad: u8) {
    let b = pbase(0);
    let mut all = 1u32 << bad;
    for &t in tags {
        let f = ncq_fis(ata::READ_FPDMA, u64::from(t), 1, t);
        h.prepare(0, t, &f, &[], &[(DATA + u64::from(t) * 512, 512)]);
        all |= 1 << t;
    }
    let f = ncq_fis(ata::READ_FPDMA, 0, 1, bad);
    h.prepare(0, bad, &f, &[], &[(1 << 40, 512)]);
    h.w(b + P_SACT, all);
    h.w(b + P_CI, all);
}

#[test]
fn ncq_error_aborts_all_queued_commands() {
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    ncq_reads(&h, &[1, 2], 0);
    assert_eq!(h.disks[0].queued(), 3);
    // Tag 0 fails first: the device reports it and aborts 1 and 2.
    h.disks[0].release(1);
    assert_ne!(h.r(b + P_IS) & IS_TFES, 0);
    let error_sdb = h.read_mem(fb(0) + 0x58, 8);
    assert_eq!(error_sdb, vec![0xa1, 0x40, 0x41, 0x04, 0, 0, 0, 0]);
    // Their reads still run (they cannot be recalled), but complete
    // nothing: the error stays, all three stay outstanding in PxSACT.
    h.disks[0].release(2);
    assert_eq!(h.disks[0].executed().len(), 3);
    assert_eq!(h.r(b + P_SACT), 0b111, "aborted tags reported completed");
    assert_eq!(h.r(b + P_TFD), ABORT, "error status overwritten");
    assert_eq!(h.read_mem(fb(0) + 0x58, 8), error_sdb);
    h.recover(0);
    assert_eq!(h.r(b + P_SACT), 0);
    // Page 10h names the failed tag (NQ clear).
    let mut f = fis(ata::READ_LOG_EXT, 0x10, 1);
    f[5] = 0;
    assert_eq!(h.run(0, 5, &f, &[], &[(DATA, 512)]) & 0xff, 0x50);
    let log = h.read_mem(DATA, 512);
    assert_eq!((log[0], log[2], log[3]), (0, 0x41, 0x04));
}

#[test]
fn ncq_error_keeps_the_port_running_until_aborted_requests_drained() {
    // An aborted read still lands in guest memory: the port must not
    // report itself stopped (PxCMD.CR) before it did.
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    ncq_reads(&h, &[4], 3);
    h.disks[0].release(1);
    assert_ne!(h.r(b + P_IS) & IS_TFES, 0);
    h.w(b + P_CMD, CMD_FRE);
    assert_ne!(h.r(b + P_CMD) & CMD_CR, 0, "stopped with a read in flight");
    h.disks[0].release(1);
    assert_eq!(h.r(b + P_CMD) & CMD_CR, 0);
    assert_eq!(h.r(b + P_SACT), 0);
    // The port works again, and stale completions did not disturb it.
    h.w(b + P_IS, u32::MAX);
    h.w(b + P_CMD, CMD_FRE | CMD_ST);
    h.disks[0].hold(false);
    let tfd = h.run(0, 0, &fis(ata::READ_DMA48, 1, 1), &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
}

#[test]
fn queued_command_rejected_at_issue_is_an_ncq_error() {
    // Out of range: accepted, then failed with its tag in page 10h, and
    // the queued command before it aborted.
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    let f = ncq_fis(ata::READ_FPDMA, 1, 1, 2);
    h.prepare(0, 2, &f, &[], &[(DATA, 512)]);
    let f = ncq_fis(ata::READ_FPDMA, 5000, 1, 6);
    h.prepare(0, 6, &f, &[], &[(DATA, 512)]);
    h.w(b + P_SACT, 0x44);
    h.w(b + P_CI, 0x44);
    assert_ne!(h.r(b + P_IS) & IS_TFES, 0);
    assert_eq!(h.r(b + P_CI), 0, "not accepted");
    assert_eq!(h.r(b + P_TFD), (E_IDNF << 8) | S_READY | S_ERR);
    h.disks[0].release(1);
    assert_eq!(h.r(b + P_SACT), 0x44);
    h.recover(0);
    let mut f = fis(ata::READ_LOG_EXT, 0x10, 1);
    f[5] = 0;
    h.run(0, 0, &f, &[], &[(DATA, 512)]);
    assert_eq!(h.read_mem(DATA, 4), vec![6, 0, 0x41, E_IDNF as u8]);
}

#[test]
fn non_queued_command_among_queued_ones_aborts_them_all() {
    // ATA: a non-queued command while NCQ commands are outstanding is
    // aborted, and so are they (no driver mixes them).
    let h = Hba::disk(0);
    h.start(0);
    let b = pbase(0);
    h.disks[0].hold(true);
    let f = ncq_fis(ata::READ_FPDMA, 1, 1, 0);
    h.prepare(0, 0, &f, &[], &[(DATA, 512)]);
    h.w(b + P_SACT, 1);
    h.w(b + P_CI, 1);
    h.issue(0, 1, &fis(ata::FLUSH48, 0, 0), &[], &[]);
    assert_eq!(h.r(b + P_TFD), ABORT);
    assert_ne!(h.r(b + P_IS) & IS_TFES, 0);
    assert_eq!(h.r(b + P_CI), 0b10, "the flush stays issued, failed");
    h.disks[0].release(1);
    assert_eq!(h.r(b + P_SACT), 1, "the aborted read completed");
    assert_eq!(h.r(b + P_TFD), ABORT);
    h.recover(0);
    h.disks[0].hold(false);
    let ops: Vec<BlockOp> = h.disks[0].submitted().iter().map(|s| s.0).collect();
    assert_eq!(ops, vec![BlockOp::Read], "the flush ran");
    let mut f = fis(ata::READ_LOG_EXT, 0x10, 1);
    f[5] = 0;
    h.run(0, 0, &f, &[], &[(DATA, 512)]);
    assert_eq!(
        h.read_mem(DATA, 1),
        vec![0x80],
        "NQ: not a queued command's error"
    );
}
