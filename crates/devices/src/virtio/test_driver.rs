//! A minimal modern virtio driver over [`VirtioPci`] for device tests:
//! several queues, chains of readable and writable buffers, used-ring
//! polling, device configuration access.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::pci::{IrqMode, VirtioPci, MODERN_BAR};
use super::transport::common;
use super::{VirtioDevice, F_VERSION_1};
use crate::pci::{MsiMessage, PciDevice, PciInterrupts};

const MEM: usize = 4 << 20;
const RINGS: u64 = 0x10000;
const RING_STRIDE: u64 = 0x2000;
const DATA: u64 = 0x200000;
const DEVICE_CFG: u64 = 0x2000;
const NOTIFY: u64 = 0x3000;
/// Entries per queue the driver sets up.
pub(crate) const QSIZE: u16 = 16;

struct NoIrq;

impl PciInterrupts for NoIrq {
    fn set_intx(&self, _asserted: bool) {}
    fn route_msi(&self, _vector: u16, _msg: Option<MsiMessage>) {}
    fn fire_msi(&self, _vector: u16) {}
}

#[derive(Clone, Copy)]
struct Ring {
    base: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

pub(crate) struct Driver {
    pub f: Arc<Mutex<VirtioPci>>,
    pub mem: GuestMemoryMmap,
    rings: Vec<Ring>,
    next_data: u64,
}

impl Driver {
    pub fn new(dev: Box<dyn VirtioDevice>) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let f = VirtioPci::new_shared(dev, mem.clone(), IrqMode::MsiX, None).unwrap();
        f.lock()
            .unwrap()
            .config_mut()
            .set_interrupts(Arc::new(NoIrq));
        Driver {
            f,
            mem,
            rings: Vec::new(),
            next_data: DATA,
        }
    }

    pub fn r(&self, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f
            .lock()
            .unwrap()
            .bar_read(MODERN_BAR, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    pub fn w(&self, off: u64, len: usize, v: u64) {
        self.f
            .lock()
            .unwrap()
            .bar_write(MODERN_BAR, off, &v.to_le_bytes()[..len]);
    }

    pub fn device_features(&self) -> u64 {
        self.w(common::DEVICE_FEATURE_SELECT, 4, 0);
        let lo = self.r(common::DEVICE_FEATURE, 4);
        self.w(common::DEVICE_FEATURE_SELECT, 4, 1);
        lo | self.r(common::DEVICE_FEATURE, 4) << 32
    }

    /// Negotiates `features` (plus VERSION_1), sets up the first
    /// `nqueues` queues and sets DRIVER_OK.
    pub fn start(&mut self, features: u64, nqueues: usize) {
        let features = features | F_VERSION_1;
        self.w(common::DEVICE_STATUS, 1, 3);
        for sel in 0..2 {
            self.w(common::DRIVER_FEATURE_SELECT, 4, sel);
            self.w(
                common::DRIVER_FEATURE,
                4,
                (features >> (32 * sel)) & 0xffff_ffff,
            );
        }
        self.w(common::DEVICE_STATUS, 1, 11);
        assert_eq!(self.r(common::DEVICE_STATUS, 1), 11, "FEATURES_OK refused");
        self.rings.clear();
        for q in 0..nqueues {
            let base = RINGS + q as u64 * RING_STRIDE;
            self.mem
                .write_slice(&[0u8; RING_STRIDE as usize], GuestAddress(base))
                .unwrap();
            self.w(common::QUEUE_SELECT, 2, q as u64);
            self.w(common::QUEUE_SIZE, 2, QSIZE.into());
            self.w(common::QUEUE_DESC, 8, base);
            self.w(common::QUEUE_DRIVER, 8, base + 16 * u64::from(QSIZE));
            self.w(common::QUEUE_DEVICE, 8, base + 0x1000);
            self.w(common::QUEUE_ENABLE, 2, 1);
            self.rings.push(Ring {
                base,
                next_desc: 0,
                avail_idx: 0,
                used_seen: 0,
            });
        }
        self.w(common::DEVICE_STATUS, 1, 15);
        assert!(self.f.lock().unwrap().is_active(), "device did not start");
    }

    pub fn reset(&mut self) {
        self.w(common::DEVICE_STATUS, 1, 0);
    }

    /// Guest memory for a buffer of `len` bytes (bump allocation).
    pub fn alloc(&mut self, len: u32) -> u64 {
        let a = self.next_data;
        self.next_data += u64::from(len).div_ceil(64) * 64;
        assert!(self.next_data < MEM as u64, "test driver out of memory");
        a
    }

    /// Makes a chain of `(addr, len, device_writable)` available on `q`;
    /// returns its head.
    pub fn post(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let r = &mut self.rings[q];
        let head = r.next_desc;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let d = (r.next_desc + i as u16) % QSIZE;
            let at = r.base + 16 * u64::from(d);
            let mut flags = if writable { 2u16 } else { 0 };
            if i + 1 < bufs.len() {
                flags |= 1;
            }
            let next = (d + 1) % QSIZE;
            self.mem.write_obj(addr, GuestAddress(at)).unwrap();
            self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        }
        r.next_desc = (r.next_desc + bufs.len() as u16) % QSIZE;
        self.repost(q, head);
        head
    }

    /// Makes chain `head` available on `q` once more, as a hostile
    /// driver may before the device used it.
    pub fn repost(&mut self, q: usize, head: u16) {
        let r = &mut self.rings[q];
        let avail = r.base + 16 * u64::from(QSIZE);
        let slot = u64::from(r.avail_idx % QSIZE);
        self.mem
            .write_obj(head, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        r.avail_idx = r.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(r.avail_idx, GuestAddress(avail + 2))
            .unwrap();
    }

    /// Posts one buffer holding `data` (device-readable).
    pub fn post_out(&mut self, q: usize, data: &[u8]) -> u16 {
        let a = self.alloc(data.len() as u32);
        self.mem.write_slice(data, GuestAddress(a)).unwrap();
        self.post(q, &[(a, data.len() as u32, false)])
    }

    /// Posts one device-writable buffer of `len` bytes; returns its address.
    pub fn post_in(&mut self, q: usize, len: u32) -> u64 {
        let a = self.alloc(len);
        self.post(q, &[(a, len, true)]);
        a
    }

    pub fn kick(&self, q: usize) {
        self.w(NOTIFY + 4 * q as u64, 2, q as u64);
    }

    /// The next used element of `q` (head, length), waiting up to
    /// `timeout`.
    pub fn used_within(&mut self, q: usize, timeout: Duration) -> Option<(u16, u32)> {
        let r = &mut self.rings[q];
        let used = r.base + 0x1000;
        let t = Instant::now();
        loop {
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            if idx != r.used_seen {
                let e = used + 4 + 8 * u64::from(r.used_seen % QSIZE);
                let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
                let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
                r.used_seen = r.used_seen.wrapping_add(1);
                return Some((id as u16, len));
            }
            if t.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn used(&mut self, q: usize) -> (u16, u32) {
        self.used_within(q, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no used buffer on queue {q}"))
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
        b
    }

    pub fn cfg_read(&self, off: u64, len: usize) -> u64 {
        self.r(DEVICE_CFG + off, len)
    }

    pub fn cfg_write(&self, off: u64, len: usize, v: u64) {
        self.w(DEVICE_CFG + off, len, v)
    }
}
