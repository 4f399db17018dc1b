//! virtio-blk driven through the legacy transport as a driver would,
//! over an in-memory backend whose completions can be held back.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::pci::{MsiMessage, PciDevice, PciInterrupts};
use crate::ramdisk::{racing_disk, RamDisk};
use crate::virtio::pci::{IrqMode, VirtioPci, LEGACY_BAR};
use crate::virtio::transport::legacy;

const MEM: usize = 1 << 20;
const RING: u64 = 0x10000;
const DATA: u64 = 0x40000;
const QS: u64 = QUEUE_SIZE as u64;

struct NoIrq;
impl PciInterrupts for NoIrq {
    fn set_intx(&self, _: bool) {}
    fn route_msi(&self, _: u16, _: Option<MsiMessage>) {}
    fn fire_msi(&self, _: u16) {}
}

struct H {
    f: Arc<Mutex<VirtioPci>>,
    mem: GuestMemoryMmap,
    disk: Arc<RamDisk>,
    next_desc: u16,
    avail: u16,
}

fn harness(disk: Arc<RamDisk>, serial: &str, features: u32) -> H {
    harness_posted(disk, serial, features, |_| {})
}

/// [`harness`], with `post` filling the ring before DRIVER_OK: the worker's
/// first look at the ring then sees every chain at once (posting after
/// DRIVER_OK races with that look).
fn harness_posted(disk: Arc<RamDisk>, serial: &str, features: u32, post: impl FnOnce(&mut H)) -> H {
    let dev = VirtioBlk::new(disk.clone(), serial);
    harness_dev(dev, disk, features, post)
}

/// [`harness`] whose resets wait at most `bound` for the backend.
fn harness_bounded(disk: Arc<RamDisk>, bound: Duration) -> H {
    let mut dev = VirtioBlk::new(disk.clone(), "s");
    dev.drain_bound = bound;
    harness_dev(dev, disk, F_ALL, |_| {})
}

fn harness_dev(dev: VirtioBlk, disk: Arc<RamDisk>, features: u32, post: impl FnOnce(&mut H)) -> H {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let f = VirtioPci::new_shared(Box::new(dev), mem.clone(), IrqMode::MsiX, None).unwrap();
    f.lock()
        .unwrap()
        .config_mut()
        .set_interrupts(Arc::new(NoIrq));
    let mut h = H {
        f,
        mem,
        disk,
        next_desc: 0,
        avail: 0,
    };
    h.w(legacy::STATUS, 1, 3);
    h.w(legacy::GUEST_FEATURES, 4, features.into());
    h.w(legacy::QUEUE_SEL, 2, 0);
    assert_eq!(h.r(legacy::QUEUE_NUM, 2), QS);
    h.w(legacy::QUEUE_PFN, 4, RING >> 12);
    post(&mut h);
    h.w(legacy::STATUS, 1, 7);
    h
}

impl H {
    fn r(&self, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f
            .lock()
            .unwrap()
            .bar_read(LEGACY_BAR, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }
    fn w(&self, off: u64, len: usize, v: u64) {
        self.f
            .lock()
            .unwrap()
            .bar_write(LEGACY_BAR, off, &v.to_le_bytes()[..len]);
    }
    fn cfg(&self, off: u64, len: usize) -> u64 {
        self.r(legacy::CONFIG_NO_MSIX + off, len)
    }

    /// Posts a chain of (addr, len, device-writable) descriptors.
    fn post(&mut self, descs: &[(u64, u32, bool)]) {
        self.post_quiet(descs);
        self.w(legacy::QUEUE_NOTIFY, 2, 0);
    }

    /// [`H::post`] without the notify.
    fn post_quiet(&mut self, descs: &[(u64, u32, bool)]) {
        let head = self.next_desc;
        for (i, &(addr, len, w)) in descs.iter().enumerate() {
            let idx = (self.next_desc + i as u16) % QUEUE_SIZE;
            let d = RING + 16 * u64::from(idx);
            let last = i + 1 == descs.len();
            let flags = u16::from(!last) | if w { 2 } else { 0 };
            self.mem.write_obj(addr, GuestAddress(d)).unwrap();
            self.mem.write_obj(len, GuestAddress(d + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
            self.mem
                .write_obj((idx + 1) % QUEUE_SIZE, GuestAddress(d + 14))
                .unwrap();
        }
        self.next_desc = (self.next_desc + descs.len() as u16) % QUEUE_SIZE;
        let avail = RING + 16 * QS;
        let slot = u64::from(self.avail) % QS;
        self.mem
            .write_obj(head, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        self.avail = self.avail.wrapping_add(1);
        self.mem
            .write_obj(self.avail, GuestAddress(avail + 2))
            .unwrap();
    }

    fn used_base() -> u64 {
        (RING + 16 * QS + 2 * (3 + QS)).div_ceil(4096) * 4096
    }

    /// Waits for used index `idx`; returns the last used element's length.
    fn wait_used(&self, idx: u16) -> u32 {
        let used = Self::used_base();
        let t = Instant::now();
        loop {
            let v: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            if v == idx {
                let slot = u64::from(idx.wrapping_sub(1)) % QS;
                return self
                    .mem
                    .read_obj(GuestAddress(used + 4 + 8 * slot + 4))
                    .unwrap();
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "used idx {v}, want {idx}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn used_idx(&self) -> u16 {
        self.mem
            .read_obj(GuestAddress(Self::used_base() + 2))
            .unwrap()
    }

    /// A request with header (type, sector), `data` and a status byte;
    /// returns (status, used length).
    fn request(&mut self, typ: u32, sector: u64, data: &[(u64, u32, bool)]) -> (u8, u32) {
        let hdr = DATA - 0x100;
        let status = DATA - 0x10;
        self.mem.write_obj(typ, GuestAddress(hdr)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(hdr + 4)).unwrap();
        self.mem.write_obj(sector, GuestAddress(hdr + 8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        let mut d = vec![(hdr, 16, false)];
        d.extend_from_slice(data);
        d.push((status, 1, true));
        self.post(&d);
        let len = self.wait_used(self.avail);
        (self.mem.read_obj(GuestAddress(status)).unwrap(), len)
    }
}

const F_ALL: u32 = (features::SEG_MAX
    | features::BLK_SIZE
    | features::FLUSH
    | features::TOPOLOGY
    | features::DISCARD
    | features::WRITE_ZEROES) as u32;

#[test]
fn identity_features_and_config() {
    let h = harness(racing_disk(1 << 20, false), "s", F_ALL);
    let mut id = [0u8; 4];
    h.f.lock().unwrap().config().read(0, &mut id);
    assert_eq!(u32::from_le_bytes(id), 0x1001_1af4);
    h.f.lock().unwrap().config().read(8, &mut id);
    assert_eq!(&id[1..4], &[0, 0, 1], "class 01/00/00 as bhyve");
    let hf = h.r(legacy::HOST_FEATURES, 4);
    assert_eq!(hf & u64::from(F_ALL), u64::from(F_ALL));
    assert_eq!(hf & features::RO, 0);
    assert_eq!(h.cfg(0, 8), (1 << 20) / 512, "capacity");
    assert_eq!(h.cfg(12, 4), u64::from(SEG_MAX));
    assert_eq!(h.cfg(20, 4), 512, "blk_size");
    assert_eq!(h.cfg(24, 1), 3, "4096/512 = 2^3");
    assert_eq!(h.cfg(36, 4), u64::from(MAX_DISCARD_SECTORS));
    assert_eq!(h.cfg(40, 4), 1);
    assert_eq!(h.cfg(44, 4), 8, "discard alignment in sectors");
    assert_eq!(h.cfg(56, 1), 1);
    assert_eq!(h.cfg(58, 4), 0, "past the end reads as zero");
    let ro = harness(racing_disk(4096, true), "s", 0);
    let hf = ro.r(legacy::HOST_FEATURES, 4);
    assert_ne!(hf & features::RO, 0);
    assert_eq!(hf & (features::DISCARD | features::WRITE_ZEROES), 0);
}

#[test]
fn write_read_flush_and_get_id() {
    let mut h = harness(racing_disk(1 << 20, false), "BHYVE-D5EC-1A86-9C8F", F_ALL);
    let pat: Vec<u8> = (0..1536u32).map(|i| (i * 7 + 3) as u8).collect();
    h.mem.write_slice(&pat[..512], GuestAddress(DATA)).unwrap();
    h.mem
        .write_slice(&pat[512..], GuestAddress(DATA + 0x3000))
        .unwrap();
    let (st, len) = h.request(
        req::OUT,
        10,
        &[(DATA, 512, false), (DATA + 0x3000, 1024, false)],
    );
    assert_eq!((st, len), (req::S_OK, 1));
    assert_eq!(h.disk.with_data(|d| d[5120..5120 + 1536].to_vec()), pat);
    assert!(
        !h.disk.submitted()[0].3,
        "FLUSH negotiated: no write-through"
    );
    let (st, len) = h.request(req::IN, 10, &[(DATA + 0x8000, 1536, true)]);
    assert_eq!((st, len), (req::S_OK, 1537));
    let mut back = vec![0u8; 1536];
    h.mem
        .read_slice(&mut back, GuestAddress(DATA + 0x8000))
        .unwrap();
    assert_eq!(back, pat);
    assert_eq!(h.request(req::FLUSH, 0, &[]), (req::S_OK, 1));
    let (st, len) = h.request(req::GET_ID, 0, &[(DATA + 0x9000, 20, true)]);
    assert_eq!((st, len), (req::S_OK, 21));
    let mut id = [0u8; 20];
    h.mem
        .read_slice(&mut id, GuestAddress(DATA + 0x9000))
        .unwrap();
    assert_eq!(&id, b"BHYVE-D5EC-1A86-9C8F");
}

#[test]
fn without_flush_feature_writes_are_write_through() {
    let mut h = harness(racing_disk(1 << 16, false), "s", 0);
    assert_eq!(h.request(req::OUT, 0, &[(DATA, 512, false)]).0, req::S_OK);
    assert!(h.disk.submitted()[0].3);
}

#[test]
fn refused_requests() {
    let mut h = harness(racing_disk(1 << 16, false), "s", 0);
    let cap = (1u64 << 16) / 512;
    // Past the end, straddling it, and a sector count that overflows.
    assert_eq!(
        h.request(req::IN, cap, &[(DATA, 512, true)]).0,
        req::S_IOERR
    );
    assert_eq!(
        h.request(req::IN, cap - 1, &[(DATA, 1024, true)]).0,
        req::S_IOERR
    );
    assert_eq!(
        h.request(req::OUT, u64::MAX, &[(DATA, 512, false)]).0,
        req::S_IOERR
    );
    // Not a multiple of 512.
    assert_eq!(h.request(req::IN, 0, &[(DATA, 100, true)]).0, req::S_IOERR);
    // Unknown types, barrier flag.
    assert_eq!(h.request(7, 0, &[]).0, req::S_UNSUPP);
    assert_eq!(h.request(0x8000_0001, 0, &[]).0, req::S_UNSUPP);
    // DISCARD/WRITE_ZEROES were not negotiated.
    assert_eq!(
        h.request(req::DISCARD, 0, &[(DATA, 16, false)]).0,
        req::S_UNSUPP
    );
    assert_eq!(
        h.request(req::WRITE_ZEROES, 0, &[(DATA, 16, false)]).0,
        req::S_UNSUPP
    );
    // Data outside guest memory: the backend's error is IOERR.
    assert_eq!(
        h.request(req::IN, 0, &[(MEM as u64 + 4096, 512, true)]).0,
        req::S_IOERR
    );
    // A 4 GiB descriptor is refused before any I/O (virtio-queue may
    // already end the chain there: then there is no status byte).
    let (st, len) = h.request(req::IN, 0, &[(DATA, u32::MAX, true)]);
    assert!(
        (st, len) == (req::S_IOERR, 1) || (st, len) == (0xff, 0),
        "{st} {len}"
    );
    let (st, len) = h.request(req::IN, 0, &[(DATA, 0x1000_0000, true)]);
    assert!(
        (st, len) == (req::S_IOERR, 1) || (st, len) == (0xff, 0),
        "{st} {len}"
    );
    let n = h.disk.submitted().len();
    assert_eq!(n, 1, "only the out-of-RAM read reached the backend");
    // Header split across descriptors still parses; a short one does not.
    h.mem.write_obj(req::FLUSH, GuestAddress(DATA)).unwrap();
    h.mem.write_obj(0xffu8, GuestAddress(DATA + 0x200)).unwrap();
    h.post(&[
        (DATA, 4, false),
        (DATA + 4, 12, false),
        (DATA + 0x200, 1, true),
    ]);
    h.wait_used(h.avail);
    assert_eq!(
        h.mem.read_obj::<u8>(GuestAddress(DATA + 0x200)).unwrap(),
        req::S_OK
    );
    h.post(&[(DATA, 8, false), (DATA + 0x200, 1, true)]);
    assert_eq!(h.wait_used(h.avail), 1);
    assert_eq!(
        h.mem.read_obj::<u8>(GuestAddress(DATA + 0x200)).unwrap(),
        req::S_IOERR
    );
    // No status byte at all: completed with length 0, nothing written.
    h.post(&[(DATA, 16, false)]);
    assert_eq!(h.wait_used(h.avail), 0);
    // Readable after writable: refused.
    h.post(&[
        (DATA, 16, false),
        (DATA + 0x200, 1, true),
        (DATA + 0x300, 16, false),
    ]);
    assert_eq!(h.wait_used(h.avail), 1);
}

#[test]
fn read_only_refuses_writes() {
    let mut h = harness(racing_disk(1 << 16, true), "s", 0);
    assert_eq!(
        h.request(req::OUT, 0, &[(DATA, 512, false)]).0,
        req::S_IOERR
    );
    assert_eq!(h.request(req::IN, 0, &[(DATA, 512, true)]).0, req::S_OK);
}

#[test]
fn discard_and_write_zeroes() {
    let mut h = harness(racing_disk(1 << 16, false), "s", F_ALL);
    let seg = DATA + 0x1000;
    let put = |h: &H, sector: u64, n: u32, flags: u32| {
        h.mem.write_obj(sector, GuestAddress(seg)).unwrap();
        h.mem.write_obj(n, GuestAddress(seg + 8)).unwrap();
        h.mem.write_obj(flags, GuestAddress(seg + 12)).unwrap();
    };
    put(&h, 2, 3, 0);
    assert_eq!(h.request(req::DISCARD, 0, &[(seg, 16, false)]).0, req::S_OK);
    h.disk.with_data(|d| {
        assert!(d[1024..2560].iter().all(|&b| b == 0));
        assert_eq!(d[2560], 5);
        assert_eq!(d[1023], 1);
    });
    put(&h, 8, 1, req::WRITE_ZEROES_UNMAP);
    assert_eq!(
        h.request(req::WRITE_ZEROES, 0, &[(seg, 16, false)]).0,
        req::S_OK
    );
    assert!(h.disk.with_data(|d| d[4096..4608].iter().all(|&b| b == 0)));
    assert!(h
        .disk
        .submitted()
        .contains(&(BlockOp::WriteZeroes { unmap: true }, 4096, 512, false)));
    // UNMAP on a discard, unknown flags, two ranges, out of range.
    put(&h, 0, 1, 1);
    assert_eq!(
        h.request(req::DISCARD, 0, &[(seg, 16, false)]).0,
        req::S_UNSUPP
    );
    put(&h, 0, 1, 4);
    assert_eq!(
        h.request(req::WRITE_ZEROES, 0, &[(seg, 16, false)]).0,
        req::S_UNSUPP
    );
    put(&h, 0, 1, 0);
    assert_eq!(
        h.request(req::DISCARD, 0, &[(seg, 32, false)]).0,
        req::S_IOERR
    );
    put(&h, 127, 2, 0);
    assert_eq!(
        h.request(req::DISCARD, 0, &[(seg, 16, false)]).0,
        req::S_IOERR
    );
    put(&h, 0, MAX_DISCARD_SECTORS + 1, 0);
    assert_eq!(
        h.request(req::DISCARD, 0, &[(seg, 16, false)]).0,
        req::S_IOERR
    );
}

#[test]
fn reset_with_requests_in_flight() {
    let disk = racing_disk(1 << 16, false);
    // The reset gives up waiting for the held requests at once.
    let mut h = harness_bounded(disk.clone(), Duration::from_millis(10));
    disk.hold(true);
    let status = DATA + 0x500;
    h.mem.write_obj(req::IN, GuestAddress(DATA)).unwrap();
    h.mem.write_obj(0u64, GuestAddress(DATA + 8)).unwrap();
    h.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
    for _ in 0..4 {
        h.post(&[
            (DATA, 16, false),
            (DATA + 0x1000, 512, true),
            (status, 1, true),
        ]);
    }
    let t = Instant::now();
    while disk.submitted().len() < 4 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    h.w(legacy::STATUS, 1, 0);
    assert_eq!(h.r(legacy::STATUS, 1), 0);
    disk.hold(false);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.used_idx(), 0, "nothing reached the ring after reset");
    assert_eq!(h.mem.read_obj::<u8>(GuestAddress(status)).unwrap(), 0xff);
    // The device works again after a new set-up.
    h.mem
        .write_obj(0u16, GuestAddress(RING + 16 * QS + 2))
        .unwrap();
    let mut h2 = H {
        f: h.f.clone(),
        mem: h.mem.clone(),
        disk: disk.clone(),
        next_desc: 0,
        avail: 0,
    };
    h2.w(legacy::STATUS, 1, 3);
    h2.w(legacy::GUEST_FEATURES, 4, F_ALL.into());
    h2.w(legacy::QUEUE_PFN, 4, RING >> 12);
    h2.w(legacy::STATUS, 1, 7);
    assert_eq!(h2.request(req::FLUSH, 0, &[]).0, req::S_OK);
}

#[test]
fn many_requests_in_flight_complete() {
    let disk = racing_disk(1 << 20, false);
    let mut h = harness(disk.clone(), "s", F_ALL);
    disk.hold(true);
    h.mem.write_obj(req::IN, GuestAddress(DATA)).unwrap();
    h.mem.write_obj(0u64, GuestAddress(DATA + 8)).unwrap();
    // 40 requests of 3 descriptors: the ring wraps its descriptor table.
    for i in 0..40u64 {
        h.post(&[
            (DATA, 16, false),
            (DATA + 0x1000 + 512 * i, 512, true),
            (DATA + 0x800 + i, 1, true),
        ]);
    }
    let t = Instant::now();
    while disk.submitted().len() < 40 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not all in flight at once"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    disk.hold(false);
    h.wait_used(40);
    for i in 0..40u64 {
        assert_eq!(
            h.mem
                .read_obj::<u8>(GuestAddress(DATA + 0x800 + i))
                .unwrap(),
            0
        );
    }
}

/// Contiguous reads made available together become one backend request
/// (and so do contiguous writes); each chain still gets its own data and
/// status. A read of another place breaks the run.
#[test]
fn contiguous_requests_are_merged() {
    let disk = racing_disk(1 << 20, false);
    let h = harness_posted(disk.clone(), "s", F_ALL, |h| {
        for i in 0..8u64 {
            let hdr = DATA + 32 * i;
            h.mem.write_obj(req::IN, GuestAddress(hdr)).unwrap();
            h.mem.write_obj(10 + i, GuestAddress(hdr + 8)).unwrap();
            h.post_quiet(&[
                (hdr, 16, false),
                (DATA + 0x1000 + 512 * i, 512, true),
                (DATA + 0x800 + i, 1, true),
            ]);
        }
        // Not contiguous with the run: its own request.
        let hdr = DATA + 0x400;
        h.mem.write_obj(req::IN, GuestAddress(hdr)).unwrap();
        h.mem.write_obj(100u64, GuestAddress(hdr + 8)).unwrap();
        h.post_quiet(&[
            (hdr, 16, false),
            (DATA + 0x3000, 512, true),
            (DATA + 0x808, 1, true),
        ]);
    });
    h.w(legacy::QUEUE_NOTIFY, 2, 0);
    h.wait_used(9);
    for i in 0..8u64 {
        let mut b = [0u8; 512];
        h.mem
            .read_slice(&mut b, GuestAddress(DATA + 0x1000 + 512 * i))
            .unwrap();
        assert!(b.iter().all(|&x| x == (10 + i) as u8), "sector {}", 10 + i);
        assert_eq!(
            h.mem
                .read_obj::<u8>(GuestAddress(DATA + 0x800 + i))
                .unwrap(),
            req::S_OK
        );
    }
    let mut b = [0u8; 512];
    h.mem
        .read_slice(&mut b, GuestAddress(DATA + 0x3000))
        .unwrap();
    assert!(b.iter().all(|&x| x == 100));
    let ops = disk.submitted();
    let reads: Vec<u64> = ops
        .iter()
        .filter(|o| o.0 == BlockOp::Read)
        .map(|o| o.1)
        .collect();
    assert_eq!(reads, vec![10 * 512, 100 * 512], "{ops:?}");
    // The merged request's length covers all eight chains.
    let first = ops.iter().find(|o| o.0 == BlockOp::Read).unwrap();
    assert_eq!(first.2, 8 * 512, "{ops:?}");
    // Each chain's used length is its own data plus the status byte.
    let used = H::used_base();
    for slot in 0..8u64 {
        let len: u32 = h
            .mem
            .read_obj(GuestAddress(used + 4 + 8 * slot + 4))
            .unwrap();
        assert_eq!(len, 513);
    }
}

/// A guest that resets and re-activates the device while its requests
/// wait in the backend must not get a fresh in-flight allowance each
/// time: the backend's queue would grow with every reset.
#[test]
fn resets_do_not_multiply_the_in_flight_bound() {
    let disk = racing_disk(1 << 16, false);
    disk.hold(true);
    // Each reset gives up waiting for the held requests at once.
    let mut h = harness_bounded(disk.clone(), Duration::from_millis(10));
    // One FLUSH chain, made available QUEUE_SIZE times (a hostile
    // driver may re-post a head before it was used).
    let status = DATA + 0x500;
    h.mem.write_obj(req::FLUSH, GuestAddress(DATA)).unwrap();
    let fill = |h: &mut H| {
        h.next_desc = 0;
        h.avail = 0;
        h.post_quiet(&[(DATA, 16, false), (status, 1, true)]);
        let avail = RING + 16 * QS;
        for slot in 0..QS {
            h.mem
                .write_obj(0u16, GuestAddress(avail + 4 + 2 * slot))
                .unwrap();
        }
        h.mem
            .write_obj(QUEUE_SIZE, GuestAddress(avail + 2))
            .unwrap();
        h.w(legacy::QUEUE_NOTIFY, 2, 0);
    };
    let wait_submitted = |n: usize| {
        let t = Instant::now();
        while disk.submitted().len() < n && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Give a worker that would go over the bound the time to do so.
        std::thread::sleep(Duration::from_millis(50));
        disk.submitted().len()
    };
    fill(&mut h);
    assert_eq!(wait_submitted(QS as usize), QS as usize);
    for _ in 0..3 {
        h.w(legacy::STATUS, 1, 0);
        h.w(legacy::STATUS, 1, 3);
        h.w(legacy::GUEST_FEATURES, 4, F_ALL.into());
        h.w(legacy::QUEUE_PFN, 4, RING >> 12);
        h.w(legacy::STATUS, 1, 7);
        fill(&mut h);
    }
    assert_eq!(
        wait_submitted(QS as usize + 1),
        QS as usize,
        "requests of earlier activations still count"
    );
    // Once the backend completes them, the device serves again.
    disk.hold(false);
    disk.release(usize::MAX);
    assert!(wait_submitted(QS as usize + 1) > QS as usize);
}

/// Posts a 512-byte read of `sector` into `buf` (status at `status`) and
/// waits until the backend has it.
fn post_held_read(h: &mut H, hdr: u64, sector: u64, buf: u64, status: u64, submitted: usize) {
    h.mem.write_obj(req::IN, GuestAddress(hdr)).unwrap();
    h.mem.write_obj(sector, GuestAddress(hdr + 8)).unwrap();
    h.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
    h.mem.write_slice(&[0xaa; 512], GuestAddress(buf)).unwrap();
    h.post(&[(hdr, 16, false), (buf, 512, true), (status, 1, true)]);
    let t = Instant::now();
    while h.disk.submitted().len() < submitted {
        assert!(t.elapsed() < Duration::from_secs(5), "not submitted");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Resets the device from another thread (a vCPU); the flag says when
/// the reset returned.
fn reset_in_thread(h: &H) -> (std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let (f, returned) = (h.f.clone(), Arc::new(AtomicBool::new(false)));
    let r = returned.clone();
    let t = std::thread::spawn(move || {
        f.lock()
            .unwrap()
            .bar_write(LEGACY_BAR, legacy::STATUS, &[0]);
        r.store(true, Ordering::SeqCst);
    });
    (t, returned)
}

/// A reset returns only once the backend is done with the device's
/// reads: afterwards the driver owns its buffers again, and no read data
/// lands in them.
#[test]
fn reset_waits_for_reads_held_by_the_backend() {
    let disk = racing_disk(1 << 16, false);
    let mut h = harness(disk.clone(), "s", F_ALL);
    disk.hold(true);
    let buf = DATA + 0x1000;
    post_held_read(&mut h, DATA, 3, buf, DATA + 0x500, 1);
    let (t, returned) = reset_in_thread(&h);
    std::thread::sleep(Duration::from_millis(200));
    let early = returned.load(Ordering::SeqCst);
    disk.hold(false);
    t.join().unwrap();
    assert!(!early, "the reset returned while the backend held a read");
    // The driver reuses its buffer after the reset: nothing overwrites it.
    h.mem.write_slice(&[0x55; 512], GuestAddress(buf)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut b = [0u8; 512];
    h.mem.read_slice(&mut b, GuestAddress(buf)).unwrap();
    assert!(
        b.iter().all(|&x| x == 0x55),
        "read data landed after the reset"
    );
    assert_eq!(h.r(legacy::STATUS, 1), 0);
}

/// A backend that never completes does not wedge the resetting vCPU: the
/// reset gives up after its bound.
#[test]
fn reset_waits_for_the_backend_only_so_long() {
    let disk = racing_disk(1 << 16, false);
    let bound = Duration::from_millis(300);
    let mut h = harness_bounded(disk.clone(), bound);
    disk.hold(true);
    post_held_read(&mut h, DATA, 3, DATA + 0x1000, DATA + 0x500, 1);
    let start = Instant::now();
    h.w(legacy::STATUS, 1, 0);
    let took = start.elapsed();
    assert!(took >= bound, "returned after {took:?}");
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    assert_eq!(h.r(legacy::STATUS, 1), 0);
    disk.hold(false);
    // The late completion leaves the ring and the status byte alone.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.used_idx(), 0);
    assert_eq!(
        h.mem.read_obj::<u8>(GuestAddress(DATA + 0x500)).unwrap(),
        0xff
    );
}

/// A completion that wants to signal the driver while a vCPU resets the
/// device (holding the PCI function) gives up its interrupt instead of
/// waiting for the function: the backend thread it runs on then goes on
/// to the device's other requests, which the reset waits for.
#[test]
fn a_completion_signalling_during_a_reset_does_not_stall_it() {
    // One backend thread, completing in order.
    let opts = crate::ramdisk::Options {
        completion: crate::ramdisk::Completion::Worker,
        strict: false,
    };
    let disk = RamDisk::new(
        crate::ramdisk::sector_bytes(1 << 16),
        RamDisk::info_rw(),
        opts,
    )
    .unwrap();
    let bound = Duration::from_secs(3);
    let mut h = harness_bounded(disk.clone(), bound);
    disk.hold(true);
    // Two reads of places apart: two backend requests.
    post_held_read(&mut h, DATA, 3, DATA + 0x1000, DATA + 0x500, 1);
    post_held_read(&mut h, DATA + 0x100, 40, DATA + 0x2000, DATA + 0x501, 2);
    // The vCPU takes the function; the first read completes, and its
    // thread stops at the interrupt, needing the function.
    let f = h.f.clone();
    let mut g = f.lock().unwrap();
    disk.hold(false);
    let t = Instant::now();
    while h.used_idx() < 1 {
        assert!(t.elapsed() < Duration::from_secs(5), "first read not used");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    g.bar_write(LEGACY_BAR, legacy::STATUS, &[0]);
    let took = start.elapsed();
    drop(g);
    assert!(took < Duration::from_secs(1), "the reset waited {took:?}");
    assert_eq!(disk.executed().len(), 2);
}
