//! The transport driven as a driver would, with virtio-rnd behind it:
//! legacy and modern set-up, INTx/ISR, MSI-X and MSI, the PCI_CFG
//! window, reset, and a guest that lies about everything.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::pci::{IrqMode, VirtioPci, LEGACY_BAR, MODERN_BAR};
use super::transport::{common, legacy};
use super::{status, VirtioRnd, F_RING_EVENT_IDX, F_VERSION_1};
use crate::pci::msi::MSIX_ENABLE;
use crate::pci::{MsiMessage, PciDevice, PciInterrupts};

const MEM: usize = 1 << 20;
const RING: u64 = 0x10000;
const DATA: u64 = 0x40000;

#[derive(Default)]
struct Rec {
    intx: Mutex<Vec<bool>>,
    fired: Mutex<Vec<u16>>,
}

impl PciInterrupts for Rec {
    fn set_intx(&self, asserted: bool) {
        self.intx.lock().unwrap().push(asserted);
    }
    fn route_msi(&self, _vector: u16, _msg: Option<MsiMessage>) {}
    fn fire_msi(&self, vector: u16) {
        self.fired.lock().unwrap().push(vector);
    }
}

struct Harness {
    f: Arc<Mutex<VirtioPci>>,
    mem: GuestMemoryMmap,
    irq: Arc<Rec>,
}

impl Harness {
    fn new(mode: IrqMode) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let f = VirtioPci::new_shared(Box::new(VirtioRnd::new()), mem.clone(), mode, None).unwrap();
        let irq = Arc::new(Rec::default());
        f.lock().unwrap().config_mut().set_interrupts(irq.clone());
        Harness { f, mem, irq }
    }

    fn r(&self, bar: u8, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f.lock().unwrap().bar_read(bar, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    fn w(&self, bar: u8, off: u64, len: usize, v: u64) {
        self.f
            .lock()
            .unwrap()
            .bar_write(bar, off, &v.to_le_bytes()[..len]);
    }

    fn cfg_r(&self, off: u16, len: usize) -> u64 {
        let mut b = [0u8; 8];
        let mut f = self.f.lock().unwrap();
        if !f.cfg_read(off, &mut b[..len]) {
            f.config().read(off, &mut b[..len]);
        }
        u64::from_le_bytes(b)
    }

    fn cfg_w(&self, off: u16, len: usize, v: u64) {
        let mut f = self.f.lock().unwrap();
        let b = v.to_le_bytes();
        if !f.cfg_write(off, &b[..len]) {
            f.config_mut().write(off, &b[..len]);
        }
    }

    /// Offsets of capabilities with `id` (and, for vendor ones, type).
    fn caps(&self, id: u8) -> Vec<(u16, u8)> {
        let mut v = Vec::new();
        let mut p = self.cfg_r(0x34, 1) as u16;
        let mut n = 0;
        while p != 0 && n < 48 {
            if self.cfg_r(p, 1) as u8 == id {
                v.push((p, self.cfg_r(p + 3, 1) as u8));
            }
            p = self.cfg_r(p + 1, 1) as u16;
            n += 1;
        }
        v
    }

    /// One descriptor of `len` writable bytes at DATA in a queue at RING
    /// of `size` entries (legacy layout); makes it available.
    fn post(&self, size: u64, desc: u16, addr: u64, len: u32, avail_idx: u16) {
        let d = RING + 16 * u64::from(desc);
        self.mem.write_obj(addr, GuestAddress(d)).unwrap();
        self.mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        self.mem.write_obj(2u16, GuestAddress(d + 12)).unwrap(); // WRITE
        self.mem.write_obj(0u16, GuestAddress(d + 14)).unwrap();
        let avail = RING + 16 * size;
        let slot = u64::from(avail_idx.wrapping_sub(1)) % size;
        self.mem
            .write_obj(desc, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        self.mem
            .write_obj(avail_idx, GuestAddress(avail + 2))
            .unwrap();
    }

    fn wait_used(&self, used: u64, idx: u16) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            let v: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            if v == idx {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

fn legacy_used(size: u64) -> u64 {
    (RING + 16 * size + 2 * (3 + size)).div_ceil(4096) * 4096
}

#[test]
fn identity_and_bars() {
    let h = Harness::new(IrqMode::MsiX);
    assert_eq!(h.cfg_r(0, 4), 0x1005_1af4);
    assert_eq!(h.cfg_r(0x2c, 4), 0x0004_1af4, "subsystem = device type");
    assert_eq!(h.cfg_r(8, 1), 0, "transitional: revision 0");
    let f = h.f.lock().unwrap();
    assert!(f.config().bar_size(LEGACY_BAR) >= 24);
    assert_eq!(f.config().bar_size(MODERN_BAR), 0x4000);
    drop(f);
    let types: Vec<u8> = h.caps(0x09).into_iter().map(|c| c.1).collect();
    // common, notify, ISR, PCI_CFG (rnd has no device configuration).
    assert_eq!(types, vec![1, 2, 3, 5]);
    assert_eq!(h.caps(0x11).len(), 1, "MSI-X");
    assert!(h.caps(0x05).is_empty());
    let msi = Harness::new(IrqMode::Msi);
    assert_eq!(msi.caps(0x05).len(), 1, "-W: MSI");
    assert!(msi.caps(0x11).is_empty());
}

#[test]
fn legacy_driver_gets_random_bytes_and_intx() {
    let h = Harness::new(IrqMode::MsiX);
    assert_eq!(
        h.r(LEGACY_BAR, legacy::HOST_FEATURES, 4) & (1 << 28),
        1 << 28
    );
    h.w(LEGACY_BAR, legacy::STATUS, 1, 3);
    h.w(LEGACY_BAR, legacy::GUEST_FEATURES, 4, 0);
    h.w(LEGACY_BAR, legacy::QUEUE_SEL, 2, 0);
    let size = h.r(LEGACY_BAR, legacy::QUEUE_NUM, 2);
    assert_eq!(size, 64);
    h.w(LEGACY_BAR, legacy::QUEUE_PFN, 4, RING >> 12);
    h.post(size, 0, DATA, 48, 1);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 7);
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    let used = legacy_used(size);
    assert!(h.wait_used(used, 1), "no used buffer");
    let len: u32 = h.mem.read_obj(GuestAddress(used + 8)).unwrap();
    assert_eq!(len, 48);
    let mut b = [0u8; 48];
    h.mem.read_slice(&mut b, GuestAddress(DATA)).unwrap();
    assert!(b.iter().any(|&x| x != 0));
    // INTx with the ISR; reading ISR lowers it.
    let t = Instant::now();
    while h.irq.intx.lock().unwrap().last() != Some(&true) {
        assert!(t.elapsed() < Duration::from_secs(5), "no INTx");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(h.r(LEGACY_BAR, legacy::ISR, 1), 1);
    assert_eq!(h.irq.intx.lock().unwrap().last(), Some(&false));
    assert_eq!(h.r(LEGACY_BAR, legacy::ISR, 1), 0);
    // A second request, after the first: still served.
    h.post(size, 1, DATA + 0x100, 16, 2);
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    assert!(h.wait_used(used, 2));
    // Reset: status reads 0, the queue is gone.
    h.w(LEGACY_BAR, legacy::STATUS, 1, 0);
    assert_eq!(h.r(LEGACY_BAR, legacy::STATUS, 1), 0);
    assert_eq!(h.r(LEGACY_BAR, legacy::QUEUE_PFN, 4), 0);
    assert!(!h.f.lock().unwrap().is_active());
}

/// Sets up queue 0 through the modern common configuration with
/// `features` and MSI-X vector `vector`; returns the used ring address.
fn modern_setup(h: &Harness, features: u64, vector: u16) -> u64 {
    let c = |off| off;
    h.w(MODERN_BAR, c(common::DEVICE_STATUS), 1, 3);
    h.w(MODERN_BAR, c(common::DEVICE_FEATURE_SELECT), 4, 1);
    let hi = h.r(MODERN_BAR, c(common::DEVICE_FEATURE), 4);
    assert_eq!(hi & 1, 1, "VERSION_1 offered");
    h.w(MODERN_BAR, c(common::DRIVER_FEATURE_SELECT), 4, 0);
    h.w(
        MODERN_BAR,
        c(common::DRIVER_FEATURE),
        4,
        features & 0xffff_ffff,
    );
    h.w(MODERN_BAR, c(common::DRIVER_FEATURE_SELECT), 4, 1);
    h.w(MODERN_BAR, c(common::DRIVER_FEATURE), 4, features >> 32);
    h.w(MODERN_BAR, c(common::DEVICE_STATUS), 1, 11);
    assert_eq!(h.r(MODERN_BAR, c(common::DEVICE_STATUS), 1), 11);
    assert_eq!(h.r(MODERN_BAR, c(common::NUM_QUEUES), 2), 1);
    h.w(MODERN_BAR, c(common::QUEUE_SELECT), 2, 0);
    h.w(MODERN_BAR, c(common::QUEUE_SIZE), 2, 16);
    h.w(MODERN_BAR, c(common::QUEUE_MSIX_VECTOR), 2, vector.into());
    let used = RING + 0x1000;
    h.w(MODERN_BAR, c(common::QUEUE_DESC), 8, RING);
    h.w(MODERN_BAR, c(common::QUEUE_DRIVER), 8, RING + 16 * 16);
    h.w(MODERN_BAR, c(common::QUEUE_DEVICE), 8, used);
    h.w(MODERN_BAR, c(common::QUEUE_ENABLE), 2, 1);
    h.w(MODERN_BAR, c(common::DEVICE_STATUS), 1, 15);
    used
}

#[test]
fn modern_driver_with_msix_and_event_idx() {
    let h = Harness::new(IrqMode::MsiX);
    let (msix, _) = h.caps(0x11)[0];
    h.cfg_w(msix + 2, 2, MSIX_ENABLE.into());
    // Vector 1 → some message, unmasked.
    {
        let mut f = h.f.lock().unwrap();
        let e = 16u64;
        f.config_mut()
            .msix_write(1, e, &0xfee0_0000u32.to_le_bytes());
        f.config_mut().msix_write(1, e + 8, &0x41u32.to_le_bytes());
        f.config_mut().msix_write(1, e + 12, &0u32.to_le_bytes());
    }
    let used = modern_setup(&h, F_VERSION_1 | F_RING_EVENT_IDX, 1);
    assert_eq!(h.r(MODERN_BAR, common::QUEUE_MSIX_VECTOR, 2), 1);
    h.post(16, 0, DATA, 32, 1);
    // The notify region: queue 0 at 0x3000.
    h.w(MODERN_BAR, 0x3000, 2, 0);
    assert!(h.wait_used(used, 1));
    let t = Instant::now();
    while !h.irq.fired.lock().unwrap().contains(&1) {
        assert!(t.elapsed() < Duration::from_secs(5), "no MSI-X vector 1");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        h.irq.intx.lock().unwrap().iter().all(|&l| !l),
        "no INTx with MSI-X"
    );
    // A vector beyond the table reads back as NO_VECTOR.
    h.w(MODERN_BAR, common::MSIX_CONFIG, 2, 7);
    assert_eq!(h.r(MODERN_BAR, common::MSIX_CONFIG, 2), 0xffff);
}

#[test]
fn single_msi_with_w() {
    let h = Harness::new(IrqMode::Msi);
    let (msi, _) = h.caps(0x05)[0];
    h.cfg_w(msi + 4, 4, 0xfee0_0000);
    h.cfg_w(msi + 12, 2, 0x42);
    h.cfg_w(msi + 2, 2, 1);
    let used = modern_setup(&h, F_VERSION_1, 0xffff);
    h.post(16, 0, DATA, 8, 1);
    h.w(MODERN_BAR, 0x3000, 2, 0);
    assert!(h.wait_used(used, 1));
    let t = Instant::now();
    while !h.irq.fired.lock().unwrap().contains(&0) {
        assert!(t.elapsed() < Duration::from_secs(5), "no MSI");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The ISR says why, through the modern ISR region.
    assert_eq!(h.r(MODERN_BAR, 0x1000, 1), 1);
}

#[test]
fn features_ok_refused_for_unknown_features() {
    let h = Harness::new(IrqMode::MsiX);
    h.w(MODERN_BAR, common::DRIVER_FEATURE_SELECT, 4, 0);
    h.w(MODERN_BAR, common::DRIVER_FEATURE, 4, 1 << 5);
    h.w(
        MODERN_BAR,
        common::DEVICE_STATUS,
        1,
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
    );
    assert_eq!(
        h.r(MODERN_BAR, common::DEVICE_STATUS, 1) as u8 & status::FEATURES_OK,
        0
    );
}

#[test]
fn pci_cfg_window_reaches_the_bars() {
    let h = Harness::new(IrqMode::MsiX);
    let (cap, _) = *h.caps(0x09).iter().find(|c| c.1 == 5).unwrap();
    h.cfg_w(cap + 4, 1, MODERN_BAR.into());
    h.cfg_w(cap + 8, 4, common::NUM_QUEUES);
    h.cfg_w(cap + 12, 4, 2);
    assert_eq!(h.cfg_r(cap + 16, 4), 1);
    // A write through the window: the status register.
    h.cfg_w(cap + 8, 4, common::DEVICE_STATUS);
    h.cfg_w(cap + 12, 4, 1);
    h.cfg_w(cap + 16, 1, 1);
    assert_eq!(h.r(MODERN_BAR, common::DEVICE_STATUS, 1), 1);
    // Out of the BAR, or a bad length: nothing happens.
    h.cfg_w(cap + 8, 4, 0xffff_fffe);
    h.cfg_w(cap + 12, 4, 4);
    assert_eq!(h.cfg_r(cap + 16, 4), 0);
    h.cfg_w(cap + 4, 1, 3);
    assert_eq!(h.cfg_r(cap + 16, 4), 0);
}

#[test]
fn rings_outside_memory_need_reset() {
    let h = Harness::new(IrqMode::MsiX);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 3);
    h.w(
        LEGACY_BAR,
        legacy::QUEUE_PFN,
        4,
        (MEM as u64 + 0x10000) >> 12,
    );
    h.w(LEGACY_BAR, legacy::STATUS, 1, 7);
    assert!(!h.f.lock().unwrap().is_active());
    assert_ne!(
        h.r(LEGACY_BAR, legacy::STATUS, 1) as u8 & status::NEEDS_RESET,
        0
    );
    // A reset clears it and the device works again.
    h.w(LEGACY_BAR, legacy::STATUS, 1, 0);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 3);
    h.w(LEGACY_BAR, legacy::QUEUE_PFN, 4, RING >> 12);
    h.post(64, 0, DATA, 8, 1);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 7);
    assert!(h.wait_used(legacy_used(64), 1));
}

#[test]
fn hostile_descriptors_are_contained() {
    let h = Harness::new(IrqMode::MsiX);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 3);
    h.w(LEGACY_BAR, legacy::QUEUE_PFN, 4, RING >> 12);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 7);
    let used = legacy_used(64);
    // Outside memory, a 4 GiB length, a loop (NEXT to itself), an
    // indirect table outside memory.
    h.post(64, 0, 0xffff_ff00_0000, 64, 1);
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    assert!(h.wait_used(used, 1));
    h.post(64, 1, DATA, u32::MAX, 2);
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    assert!(h.wait_used(used, 2));
    let len: u32 = h.mem.read_obj(GuestAddress(used + 4 + 8 + 4)).unwrap();
    assert!(len as usize <= 64 << 10, "capped: {len}");
    h.post(64, 2, DATA, 16, 3);
    let d = RING + 32;
    h.mem.write_obj(3u16, GuestAddress(d + 12)).unwrap(); // WRITE|NEXT
    h.mem.write_obj(2u16, GuestAddress(d + 14)).unwrap(); // → itself
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    assert!(h.wait_used(used, 3));
    h.post(64, 3, 0xffff_0000_0000, 64, 4);
    h.mem.write_obj(4u16, GuestAddress(RING + 48 + 12)).unwrap(); // INDIRECT
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    // An avail index far ahead of the ring: refused, nothing crashes.
    h.mem
        .write_obj(40000u16, GuestAddress(RING + 16 * 64 + 2))
        .unwrap();
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    // Notifies for queues that do not exist.
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 9);
    h.w(MODERN_BAR, 0x3000 + 4 * 200, 2, 200);
    std::thread::sleep(Duration::from_millis(50));
    // Still answering, and a reset works.
    h.w(LEGACY_BAR, legacy::STATUS, 1, 0);
    assert_eq!(h.r(LEGACY_BAR, legacy::STATUS, 1), 0);
}

/// Every offset of every BAR and of the configuration space, written
/// with garbage and read back: no panic, and the identity stays.
#[test]
fn garbage_everywhere() {
    let h = Harness::new(IrqMode::MsiX);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..4 {
        for bar in [LEGACY_BAR, MODERN_BAR] {
            let size = h.f.lock().unwrap().config().bar_size(bar);
            for off in (0..size).step_by(if round == 0 { 1 } else { 3 }) {
                let len = [1, 2, 4, 8][(next() % 4) as usize];
                h.w(bar, off, len, next());
                h.r(bar, off, len);
            }
        }
        for off in 0x40..0x100u16 {
            h.cfg_w(off, 1, next());
            h.cfg_r(off, 4);
        }
    }
    assert_eq!(h.cfg_r(0, 4), 0x1005_1af4);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 0);
}

/// DRIVER_OK cleared and set again without a reset: the first worker
/// ends (found by the transport fuzzer: dropping the device then hung
/// joining a worker nobody had told to stop).
#[test]
fn driver_ok_twice_without_reset() {
    let h = Harness::new(IrqMode::MsiX);
    h.w(LEGACY_BAR, legacy::STATUS, 1, 3);
    h.w(LEGACY_BAR, legacy::QUEUE_PFN, 4, RING >> 12);
    for status in [7, 3, 7, 3, 7] {
        h.w(LEGACY_BAR, legacy::STATUS, 1, status);
    }
    h.post(64, 0, DATA, 8, 1);
    h.w(LEGACY_BAR, legacy::QUEUE_NOTIFY, 2, 0);
    assert!(h.wait_used(legacy_used(64), 1));
    let Harness { f, .. } = h;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(f);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "dropping the function hung"
    );
}
