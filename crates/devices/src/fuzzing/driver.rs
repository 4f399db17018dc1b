//! A fuzzing driver: starts a device through the modern virtio-pci
//! transport and posts descriptor chains the input describes, then
//! waits for the device to answer them and tears everything down.
//!
//! Input (after whatever the target takes first):
//! - `features: u64` (ANDed with what the device offers; VERSION_1 is
//!   always set), `ncfg: u8` then `ncfg` device configuration writes
//!   `(offset: u8, value: u32)` (4 bytes when the offset is aligned,
//!   else its low byte);
//! - chains until the input ends: `(queue: u8, n: u8)` then `n`
//!   descriptors `(flags: u8, len: u16)`. Flag 1: device-writable;
//!   flag 2: "raw", followed by `(addr: u32, len: u32)` used as is (may
//!   lie outside RAM); flag 4: the INDIRECT bit. A readable non-raw
//!   descriptor's `len` bytes follow and are its contents; a writable
//!   one gets `len` zero bytes of RAM.
//!
//! The harness builds the rings itself (they are the `virtio_queue`
//! target's business): what is fuzzed is each device's handling of
//! the chains' shapes and contents.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{Cursor, NoIrq};
use crate::pci::PciDevice;
use crate::virtio::pci::{IrqMode, VirtioPci, MODERN_BAR};
use crate::virtio::transport::common;
use crate::virtio::{VirtioDevice, F_VERSION_1};

const MEM: usize = 1 << 20;
/// Queue q's rings at `RINGS + q * RING_STRIDE`: descriptors, then the
/// available ring at +0x400 and the used ring at +0x600.
const RINGS: u64 = 0x1000;
const RING_STRIDE: u64 = 0x800;
const AVAIL: u64 = 0x400;
const USED: u64 = 0x600;
/// Buffers are bump-allocated from here.
const DATA: u64 = 0x20000;
const DEVICE_CFG: u64 = 0x2000;
const NOTIFY: u64 = 0x3000;
/// Entries of every queue; each descriptor is used once per input.
const QSIZE: u16 = 64;
/// Queues the harness sets up at most (virtio-console has 34).
const MAX_QUEUES: usize = 34;
/// How long a device may take to answer what it was given before the
/// harness calls it lost (generous: CI machines are slow and busy).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

pub(super) struct Machine {
    f: Arc<Mutex<VirtioPci>>,
    pub mem: GuestMemoryMmap,
    nqueues: usize,
    /// What the driver accepted.
    pub features: u64,
    next_desc: Vec<u16>,
    posted: Vec<u16>,
    next_data: u64,
}

impl Machine {
    /// Starts `dev` with the features and configuration writes at the
    /// start of `c`; None when the input is too short or the device
    /// refuses to start (both uninteresting).
    pub fn start(dev: Box<dyn VirtioDevice>, c: &mut Cursor) -> Option<Machine> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).ok()?;
        let f = VirtioPci::new_shared(dev, mem.clone(), IrqMode::MsiX, None).ok()?;
        f.lock()
            .unwrap_or_else(|e| e.into_inner())
            .config_mut()
            .set_interrupts(Arc::new(NoIrq));
        let mut m = Machine {
            f,
            mem,
            nqueues: 0,
            features: 0,
            next_desc: Vec::new(),
            posted: Vec::new(),
            next_data: DATA,
        };
        let want = c.u64().unwrap_or(0);
        m.w(common::DEVICE_STATUS, 1, 3);
        let offered = m.device_features();
        let features = (offered & want) | F_VERSION_1;
        for sel in 0..2 {
            m.w(common::DRIVER_FEATURE_SELECT, 4, sel);
            m.w(
                common::DRIVER_FEATURE,
                4,
                (features >> (32 * sel)) & 0xffff_ffff,
            );
        }
        m.features = features;
        m.w(common::DEVICE_STATUS, 1, 11);
        if m.r(common::DEVICE_STATUS, 1) != 11 {
            return Some(m);
        }
        let ncfg = c.u8().unwrap_or(0).min(8);
        for _ in 0..ncfg {
            let (Some(off), Some(v)) = (c.u8(), c.u32()) else {
                break;
            };
            let len = if off % 4 == 0 { 4 } else { 1 };
            m.w(DEVICE_CFG + u64::from(off), len, v.into());
        }
        m.nqueues = (m.r(common::NUM_QUEUES, 2) as usize).min(MAX_QUEUES);
        for q in 0..m.nqueues {
            let base = RINGS + q as u64 * RING_STRIDE;
            m.w(common::QUEUE_SELECT, 2, q as u64);
            let size = (m.r(common::QUEUE_SIZE, 2) as u16).min(QSIZE);
            m.w(common::QUEUE_SIZE, 2, size.into());
            m.w(common::QUEUE_DESC, 8, base);
            m.w(common::QUEUE_DRIVER, 8, base + AVAIL);
            m.w(common::QUEUE_DEVICE, 8, base + USED);
            m.w(common::QUEUE_ENABLE, 2, 1);
        }
        m.next_desc = vec![0; m.nqueues];
        m.posted = vec![0; m.nqueues];
        m.w(common::DEVICE_STATUS, 1, 15);
        Some(m)
    }

    fn r(&self, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bar_read(MODERN_BAR, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    fn w(&self, off: u64, len: usize, v: u64) {
        self.f.lock().unwrap_or_else(|e| e.into_inner()).bar_write(
            MODERN_BAR,
            off,
            &v.to_le_bytes()[..len],
        );
    }

    fn device_features(&self) -> u64 {
        self.w(common::DEVICE_FEATURE_SELECT, 4, 0);
        let lo = self.r(common::DEVICE_FEATURE, 4);
        self.w(common::DEVICE_FEATURE_SELECT, 4, 1);
        lo | self.r(common::DEVICE_FEATURE, 4) << 32
    }

    pub fn is_active(&self) -> bool {
        self.f.lock().unwrap_or_else(|e| e.into_inner()).is_active()
    }

    /// Posts the chains the rest of the input describes and kicks the
    /// queues they went to.
    pub fn post_chains(&mut self, c: &mut Cursor) {
        if self.nqueues == 0 {
            return;
        }
        while let (Some(q), Some(n)) = (c.u8(), c.u8()) {
            let q = usize::from(q) % self.nqueues;
            let n = u16::from(n).clamp(1, QSIZE);
            if self.next_desc[q] + n > QSIZE {
                break;
            }
            let mut descs = Vec::with_capacity(n.into());
            for _ in 0..n {
                let Some(d) = self.descriptor(c) else { break };
                descs.push(d);
            }
            if descs.is_empty() {
                break;
            }
            self.post(q, &descs);
        }
        for q in 0..self.nqueues {
            if self.posted[q] > 0 {
                self.w(NOTIFY + 4 * q as u64, 2, q as u64);
            }
        }
    }

    /// One descriptor: (address, length, flags without NEXT).
    fn descriptor(&mut self, c: &mut Cursor) -> Option<(u64, u32, u16)> {
        let fl = c.u8()?;
        let mut flags = 0;
        if fl & 1 != 0 {
            flags |= F_WRITE;
        }
        if fl & 4 != 0 {
            flags |= F_INDIRECT;
        }
        if fl & 2 != 0 {
            return Some((c.u32()?.into(), c.u32()?, flags));
        }
        let len = c.u16()?;
        let addr = self.next_data;
        let end = addr + u64::from(len);
        if end > MEM as u64 {
            return None;
        }
        self.next_data = end.next_multiple_of(16);
        if flags & F_WRITE == 0 {
            let data = c.take(len.into());
            let _ = self.mem.write_slice(data, GuestAddress(addr));
        }
        Some((addr, len.into(), flags))
    }

    fn post(&mut self, q: usize, descs: &[(u64, u32, u16)]) {
        let base = RINGS + q as u64 * RING_STRIDE;
        let head = self.next_desc[q];
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let d = head + i as u16;
            let at = base + 16 * u64::from(d);
            let last = i + 1 == descs.len();
            let flags = if last { flags } else { flags | F_NEXT };
            let _ = self.mem.write_obj(addr, GuestAddress(at));
            let _ = self.mem.write_obj(len, GuestAddress(at + 8));
            let _ = self.mem.write_obj(flags, GuestAddress(at + 12));
            let _ = self.mem.write_obj(d + 1, GuestAddress(at + 14));
        }
        self.next_desc[q] += descs.len() as u16;
        let idx = self.posted[q];
        let slot = base + AVAIL + 4 + 2 * u64::from(idx % QSIZE);
        let _ = self.mem.write_obj(head, GuestAddress(slot));
        self.posted[q] = idx + 1;
        let _ = self.mem.write_obj(idx + 1, GuestAddress(base + AVAIL + 2));
    }

    /// Chains of queue `q` the device has put in the used ring.
    pub fn used(&self, q: usize) -> u16 {
        let at = RINGS + q as u64 * RING_STRIDE + USED + 2;
        self.mem.read_obj(GuestAddress(at)).unwrap_or(0)
    }

    /// Waits until the device answered every chain posted to each of
    /// `queues`, calling `poll` meanwhile (the host side of a backend).
    /// A chain never answered is a lost guest buffer: a bug.
    pub fn wait_answered(&self, queues: &[usize], mut poll: impl FnMut()) {
        let t = Instant::now();
        for &q in queues.iter().filter(|&&q| q < self.nqueues) {
            while self.used(q) != self.posted[q] {
                assert!(
                    t.elapsed() < ANSWER_TIMEOUT,
                    "queue {q}: {} of {} chains answered",
                    self.used(q),
                    self.posted[q]
                );
                poll();
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Resets the device (stopping its workers), then drops the function
    /// here, not in a worker that briefly holds it to signal: the drop
    /// joins the workers, so nothing outlives the input.
    pub fn finish(self) {
        self.w(common::DEVICE_STATUS, 1, 0);
        super::drop_function(self.f);
    }
}
