//! virtio-scsi through the modern transport, as a driver would use it:
//! CDBs on the request queue over an in-memory LUN whose completions can
//! be held back, task management on the control queue, and malformed
//! chains.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::target::op;
use super::*;
use crate::pci::PciDevice;
use crate::ramdisk::{racing_disk, RamDisk};
use crate::virtio::test_driver::Driver;

const DISK: usize = 1 << 20;
const REQ_LEN: u32 = 51;
const RESP_LEN: u32 = 108;

/// What the LUN was asked: (op, offset, len).
fn ops(disk: &RamDisk) -> Vec<(BlockOp, u64, u64)> {
    disk.submitted().iter().map(|o| (o.0, o.1, o.2)).collect()
}

fn setup(ro: bool) -> (Driver, Arc<RamDisk>) {
    setup_bounded(ro, RESET_DRAIN_BOUND)
}

/// [`setup`] whose resets wait at most `bound` for the backend.
fn setup_bounded(ro: bool, bound: Duration) -> (Driver, Arc<RamDisk>) {
    let disk = racing_disk(DISK, ro);
    let mut dev = VirtioScsi::new(vec![ScsiLun {
        lun: 0,
        backend: disk.clone(),
        serial: "LUN0SERIAL".into(),
    }]);
    dev.drain_bound = bound;
    let mut d = Driver::new(Box::new(dev));
    d.start(0, 3);
    (d, disk)
}

/// LUN address of target `t`, LUN `l`, as Linux writes it.
fn addr(t: u8, l: u16) -> [u8; 8] {
    [1, t, 0x40 | (l >> 8) as u8, l as u8, 0, 0, 0, 0]
}

#[derive(Debug)]
struct Resp {
    sense_len: u32,
    residual: u32,
    status: u8,
    response: u8,
    sense: Vec<u8>,
    used: u32,
    data: Vec<u8>,
}

/// Runs one command on the request queue: `out` as data-out, `in_len`
/// bytes of data-in.
fn cmd(d: &mut Driver, lun: [u8; 8], cdb: &[u8], out: &[u8], in_len: u32) -> Resp {
    let mut hdr = vec![0u8; REQ_LEN as usize];
    hdr[..8].copy_from_slice(&lun);
    hdr[8] = 0x5a; // id
    hdr[19..19 + cdb.len()].copy_from_slice(cdb);
    let req = d.alloc(REQ_LEN);
    d.mem.write_slice(&hdr, GuestAddress(req)).unwrap();
    let mut bufs = vec![(req, REQ_LEN, false)];
    if !out.is_empty() {
        let o = d.alloc(out.len() as u32);
        d.mem.write_slice(out, GuestAddress(o)).unwrap();
        bufs.push((o, out.len() as u32, false));
    }
    let resp = d.alloc(RESP_LEN);
    d.mem
        .write_slice(&[0xee; RESP_LEN as usize], GuestAddress(resp))
        .unwrap();
    bufs.push((resp, RESP_LEN, true));
    let din = d.alloc(in_len.max(1));
    if in_len > 0 {
        bufs.push((din, in_len, true));
    }
    let head = d.post(REQUESTQ, &bufs);
    d.kick(REQUESTQ);
    let (h, used) = d.used(REQUESTQ);
    assert_eq!(h, head);
    let r = d.read(resp, RESP_LEN as usize);
    let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let sense_len = le32(&r[0..4]);
    Resp {
        sense_len,
        residual: le32(&r[4..8]),
        status: r[10],
        response: r[11],
        sense: r[12..12 + (sense_len as usize).min(96)].to_vec(),
        used,
        data: d.read(din, in_len as usize),
    }
}

#[test]
fn configuration_space() {
    let (d, _) = setup(false);
    let cfg = |off| d.cfg_read(off, 4);
    assert_eq!(cfg(0), 1, "num_queues");
    assert_eq!(cfg(4), 126, "seg_max");
    assert_eq!(cfg(8), 0xffff, "max_sectors");
    assert_eq!(cfg(16), 16, "event_info_size");
    assert_eq!((cfg(20), cfg(24)), (96, 32), "sense_size, cdb_size");
    assert_eq!(d.cfg_read(28, 2), 0, "max_channel");
    assert_eq!(d.cfg_read(30, 2), 0, "max_target");
    assert_eq!(cfg(32), 16383, "max_lun");
    // The driver may shrink sense_size; absurd values are capped.
    d.cfg_write(20, 4, 40);
    assert_eq!(cfg(20), 40);
    d.cfg_write(24, 4, 0x1_0000);
    assert_eq!(cfg(24), 255);
    d.cfg_write(0, 4, 7);
    assert_eq!(cfg(0), 1, "num_queues is read-only");
    assert_eq!(d.device_features() & 0xf, 0);
}

#[test]
fn inquiry_write_read_and_capacity() {
    let (mut d, disk) = setup(false);
    let r = cmd(&mut d, addr(0, 0), &[op::INQUIRY, 0, 0, 0, 96, 0], &[], 96);
    assert_eq!((r.response, r.status, r.sense_len), (resp::OK, 0, 0));
    assert_eq!(&r.data[8..32], b"BHYVE   VIRTUAL DISK    ");
    assert_eq!(r.used, RESP_LEN + 36);
    assert_eq!(r.residual, 60);
    let r = cmd(
        &mut d,
        addr(0, 0),
        &[op::INQUIRY, 1, 0x80, 0, 96, 0],
        &[],
        96,
    );
    assert_eq!(&r.data[4..14], b"LUN0SERIAL");
    let r = cmd(
        &mut d,
        addr(0, 0),
        &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[],
        8,
    );
    assert_eq!(r.data, [0, 0, 7, 0xff, 0, 0, 2, 0]);
    // WRITE(10) two blocks at LBA 5, then READ(10) them back.
    let pattern: Vec<u8> = (0..1024).map(|i| (i * 7 % 251) as u8).collect();
    let w = [op::WRITE_10, 0, 0, 0, 0, 5, 0, 0, 2, 0];
    let r = cmd(&mut d, addr(0, 0), &w, &pattern, 0);
    assert_eq!((r.response, r.status, r.used), (resp::OK, 0, RESP_LEN));
    assert_eq!(disk.with_data(|d| d[5 * 512..7 * 512].to_vec()), pattern);
    let rd = [op::READ_10, 0, 0, 0, 0, 5, 0, 0, 2, 0];
    let r = cmd(&mut d, addr(0, 0), &rd, &[], 1024 + 512);
    assert_eq!((r.response, r.status), (resp::OK, 0));
    assert_eq!(&r.data[..1024], &pattern[..]);
    assert_eq!((r.used, r.residual), (RESP_LEN + 1024, 512));
    // SYNCHRONIZE CACHE is a backend flush.
    let r = cmd(
        &mut d,
        addr(0, 0),
        &[op::SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[],
        0,
    );
    assert_eq!(r.status, 0);
    assert!(ops(&disk).iter().any(|o| o.0 == BlockOp::Flush));
}

#[test]
fn errors_become_check_conditions_or_responses() {
    let (mut d, _) = setup(false);
    // Past the end: CHECK CONDITION, ILLEGAL REQUEST / LBA OUT OF RANGE.
    let rd = [op::READ_10, 0, 0, 0, 0x08, 0, 0, 0, 1, 0];
    let r = cmd(&mut d, addr(0, 0), &rd, &[], 512);
    assert_eq!((r.response, r.status, r.sense_len), (resp::OK, 2, 18));
    assert_eq!((r.sense[0], r.sense[2], r.sense[12]), (0x70, 5, 0x21));
    assert_eq!((r.used, r.residual), (RESP_LEN, 512));
    // Unknown opcode.
    let r = cmd(&mut d, addr(0, 0), &[0xc5, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!((r.status, r.sense[12]), (2, 0x20));
    // A buffer smaller than the CDB's transfer: OVERRUN.
    let rd = [op::READ_10, 0, 0, 0, 0, 0, 0, 0, 4, 0];
    let r = cmd(&mut d, addr(0, 0), &rd, &[], 512);
    assert_eq!(r.response, resp::OVERRUN);
    // Another target, or a malformed LUN address: BAD_TARGET.
    let tur = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
    assert_eq!(
        cmd(&mut d, addr(1, 0), &tur, &[], 0).response,
        resp::BAD_TARGET
    );
    assert_eq!(
        cmd(&mut d, [2, 0, 0, 0, 0, 0, 0, 0], &tur, &[], 0).response,
        resp::BAD_TARGET
    );
    // An absent LUN of target 0: INQUIRY says so, TUR fails with
    // LOGICAL UNIT NOT SUPPORTED, REPORT LUNS lists LUN 0.
    let r = cmd(&mut d, addr(0, 7), &[op::INQUIRY, 0, 0, 0, 36, 0], &[], 36);
    assert_eq!((r.response, r.data[0]), (resp::OK, 0x7f));
    let r = cmd(&mut d, addr(0, 7), &tur, &[], 0);
    assert_eq!((r.status, r.sense[12]), (2, 0x25));
    let mut rl = [0u8; 12];
    rl[0] = op::REPORT_LUNS;
    rl[9] = 64;
    let r = cmd(&mut d, addr(0, 7), &rl, &[], 64);
    assert_eq!(
        &r.data[..16],
        &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.used, RESP_LEN + 16);
}

#[test]
fn read_only_unit_refuses_writes() {
    let (mut d, disk) = setup(true);
    let w = [op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let r = cmd(&mut d, addr(0, 0), &w, &[0xaa; 512], 0);
    assert_eq!((r.status, r.sense[2], r.sense[12]), (2, 7, 0x27));
    assert_eq!(disk.with_data(|d| d[0]), 0);
    let ms = cmd(
        &mut d,
        addr(0, 0),
        &[op::MODE_SENSE_6, 0, 0x08, 0, 64, 0],
        &[],
        64,
    );
    assert_eq!(ms.data[2] & 0x80, 0x80);
}

#[test]
fn unmap_and_write_same_discard() {
    let (mut d, disk) = setup(false);
    let mut p = vec![0u8, 38, 0, 32, 0, 0, 0, 0];
    for (lba, n) in [(8u64, 8u32), (100, 4)] {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    let cdb = [op::UNMAP, 0, 0, 0, 0, 0, 0, 0, p.len() as u8, 0];
    let r = cmd(&mut d, addr(0, 0), &cdb, &p, 0);
    assert_eq!((r.response, r.status), (resp::OK, 0), "{r:?}");
    disk.with_data(|data| {
        assert!(data[8 * 512..16 * 512].iter().all(|&b| b == 0));
        assert!(data[100 * 512..104 * 512].iter().all(|&b| b == 0));
        assert_eq!(data[16 * 512], 16);
    });
    let asked = ops(&disk);
    assert!(asked.contains(&(BlockOp::Discard, 4096, 4096)));
    assert!(asked.contains(&(BlockOp::Discard, 51200, 2048)));
    // WRITE SAME(16) of a zero block with UNMAP: write-zeroes.
    let mut ws = [0u8; 16];
    ws[0] = op::WRITE_SAME_16;
    ws[1] = 0x08;
    ws[9] = 200;
    ws[13] = 16;
    let r = cmd(&mut d, addr(0, 0), &ws, &[0; 512], 0);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(ops(&disk).contains(&(BlockOp::WriteZeroes { unmap: true }, 200 * 512, 16 * 512)));
    // A non-zero pattern is not supported.
    let r = cmd(&mut d, addr(0, 0), &ws, &[1; 512], 0);
    assert_eq!((r.status, r.sense[12]), (2, 0x24));
    // A bad parameter list.
    let r = cmd(&mut d, addr(0, 0), &cdb, &p[..20], 0);
    assert_eq!((r.status, r.sense[12]), (2, 0x1a));
}

#[test]
fn malformed_chains_are_answered_not_trusted() {
    let (mut d, _) = setup(false);
    // A request header shorter than lun+id+attrs+cdb: FAILURE.
    let req = d.alloc(16);
    let resp = d.alloc(RESP_LEN);
    let head = d.post(REQUESTQ, &[(req, 16, false), (resp, RESP_LEN, true)]);
    d.kick(REQUESTQ);
    assert_eq!(d.used(REQUESTQ), (head, RESP_LEN));
    assert_eq!(d.read(resp + 11, 1)[0], resp::FAILURE);
    // No writable part at all: returned with nothing written.
    let req = d.alloc(REQ_LEN);
    let head = d.post(REQUESTQ, &[(req, REQ_LEN, false)]);
    d.kick(REQUESTQ);
    assert_eq!(d.used(REQUESTQ), (head, 0));
    // A readable descriptor after a writable one.
    let head = d.post(REQUESTQ, &[(resp, RESP_LEN, true), (req, REQ_LEN, false)]);
    d.kick(REQUESTQ);
    assert_eq!(d.used(REQUESTQ), (head, 0));
    // Buffers outside guest memory: the header cannot be read.
    let head = d.post(
        REQUESTQ,
        &[(1 << 40, REQ_LEN, false), (resp, RESP_LEN, true)],
    );
    d.kick(REQUESTQ);
    assert_eq!(d.used(REQUESTQ).0, head);
    assert_eq!(d.read(resp + 11, 1)[0], resp::FAILURE);
    // A READ whose data-in lies outside RAM: MEDIUM ERROR, no panic.
    let (head, resp) = post_read(&mut d, 0, 1 << 40);
    d.kick(REQUESTQ);
    assert_eq!(d.used(REQUESTQ), (head, RESP_LEN));
    assert_eq!(d.read(resp + 10, 1)[0], 2);
    // The device still works.
    let r = cmd(
        &mut d,
        addr(0, 0),
        &[op::TEST_UNIT_READY, 0, 0, 0, 0, 0],
        &[],
        0,
    );
    assert_eq!((r.response, r.status), (resp::OK, 0));
}

/// Makes READ(10) of one block at `lba` of LUN 0 available (no kick),
/// its 512 bytes of data-in at `din`; returns the chain's head and its
/// response buffer.
fn post_read(d: &mut Driver, lba: u8, din: u64) -> (u16, u64) {
    let mut hdr = vec![0u8; REQ_LEN as usize];
    hdr[..8].copy_from_slice(&addr(0, 0));
    hdr[19..29].copy_from_slice(&[op::READ_10, 0, 0, 0, 0, lba, 0, 0, 1, 0]);
    let req = d.alloc(REQ_LEN);
    d.mem.write_slice(&hdr, GuestAddress(req)).unwrap();
    let resp = d.alloc(RESP_LEN);
    let head = d.post(
        REQUESTQ,
        &[
            (req, REQ_LEN, false),
            (resp, RESP_LEN, true),
            (din, 512, true),
        ],
    );
    (head, resp)
}

/// A control request: `req` out, `resp_len` bytes in.
fn control_req(d: &mut Driver, req: &[u8], resp_len: u32) -> (u32, Vec<u8>) {
    let a = d.alloc(req.len() as u32);
    d.mem.write_slice(req, GuestAddress(a)).unwrap();
    let r = d.alloc(resp_len);
    let head = d.post(
        CONTROLQ,
        &[(a, req.len() as u32, false), (r, resp_len, true)],
    );
    d.kick(CONTROLQ);
    let (h, used) = d.used(CONTROLQ);
    assert_eq!(h, head);
    (used, d.read(r, resp_len as usize))
}

fn tmf(sub: u32, lun: [u8; 8]) -> Vec<u8> {
    let mut v = ctrl::T_TMF.to_le_bytes().to_vec();
    v.extend_from_slice(&sub.to_le_bytes());
    v.extend_from_slice(&lun);
    v.extend_from_slice(&0x5au64.to_le_bytes());
    v
}

#[test]
fn task_management_waits_for_earlier_requests() {
    let (mut d, disk) = setup(false);
    // A READ held in the backend.
    disk.hold(true);
    let din = d.alloc(512);
    let (head, _) = post_read(&mut d, 3, din);
    d.kick(REQUESTQ);
    assert!(d
        .used_within(REQUESTQ, Duration::from_millis(100))
        .is_none());
    // ABORT TASK is answered only once the READ completed.
    let a = d.alloc(28);
    d.mem
        .write_slice(&tmf(0, addr(0, 0)), GuestAddress(a))
        .unwrap();
    let r = d.alloc(1);
    d.mem.write_obj(0xffu8, GuestAddress(r)).unwrap();
    d.post(CONTROLQ, &[(a, 28, false), (r, 1, true)]);
    d.kick(CONTROLQ);
    assert!(d
        .used_within(CONTROLQ, Duration::from_millis(200))
        .is_none());
    disk.hold(false);
    assert_eq!(d.used(REQUESTQ), (head, RESP_LEN + 512));
    assert_eq!(d.used(CONTROLQ).1, 1);
    assert_eq!(d.read(r, 1)[0], resp::FUNCTION_COMPLETE);
    assert_eq!(d.read(din, 512), vec![3u8; 512]);
    // LOGICAL UNIT RESET; another target; an unknown function; AN query.
    assert_eq!(
        control_req(&mut d, &tmf(5, addr(0, 0)), 1),
        (1, vec![resp::FUNCTION_COMPLETE])
    );
    assert_eq!(
        control_req(&mut d, &tmf(5, addr(3, 0)), 1),
        (1, vec![resp::BAD_TARGET])
    );
    assert_eq!(
        control_req(&mut d, &tmf(99, addr(0, 0)), 1),
        (1, vec![resp::FUNCTION_REJECTED])
    );
    let mut an = ctrl::T_AN_QUERY.to_le_bytes().to_vec();
    an.extend_from_slice(&addr(0, 0));
    an.extend_from_slice(&0x7eu32.to_le_bytes());
    assert_eq!(control_req(&mut d, &an, 5), (5, vec![0, 0, 0, 0, resp::OK]));
    // Garbage: returned, nothing written.
    assert_eq!(control_req(&mut d, &[9, 0, 0, 0], 4).0, 0);
}

#[test]
fn reset_with_requests_in_flight() {
    // The reset gives up waiting for the held read at once.
    let (mut d, disk) = setup_bounded(false, Duration::from_millis(10));
    disk.hold(true);
    let din = d.alloc(512);
    post_read(&mut d, 3, din);
    d.kick(REQUESTQ);
    std::thread::sleep(Duration::from_millis(50));
    d.reset();
    disk.hold(false);
    std::thread::sleep(Duration::from_millis(50));
    // The response was dropped: nothing in the used ring.
    assert!(d.used_within(REQUESTQ, Duration::from_millis(50)).is_none());
    // Started again, the device serves requests.
    d.start(0, 3);
    let r = cmd(
        &mut d,
        addr(0, 0),
        &[op::TEST_UNIT_READY, 0, 0, 0, 0, 0],
        &[],
        0,
    );
    assert_eq!((r.response, r.status), (resp::OK, 0));
}

/// A guest that resets and restarts the device while its requests wait
/// in the backend gets no fresh in-flight allowance: the requests of
/// earlier activations still count, so the backend's queue stays
/// bounded however often it resets.
#[test]
fn resets_do_not_multiply_the_in_flight_bound() {
    // Each reset gives up waiting for the held requests at once.
    let (mut d, disk) = setup_bounded(false, Duration::from_millis(10));
    disk.hold(true);
    let limit = usize::from(QUEUE_SIZE);
    let wait_for = |n: usize| {
        let t = std::time::Instant::now();
        while disk.submitted().len() < n && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Room for a worker that would go over the bound to do so.
        std::thread::sleep(Duration::from_millis(50));
        disk.submitted().len()
    };
    // One READ chain, made available again and again.
    let start = |d: &mut Driver| {
        let din = d.alloc(512);
        post_read(d, 3, din).0
    };
    let head = start(&mut d);
    d.kick(REQUESTQ);
    let mut n = wait_for(1);
    while n < limit {
        for _ in 0..8 {
            d.repost(REQUESTQ, head);
        }
        d.kick(REQUESTQ);
        n = wait_for(n + 8);
    }
    assert_eq!(n, limit);
    for _ in 0..2 {
        d.reset();
        d.start(0, 3);
        let head = start(&mut d);
        for _ in 0..7 {
            d.repost(REQUESTQ, head);
        }
        d.kick(REQUESTQ);
    }
    assert_eq!(
        wait_for(limit + 1),
        limit,
        "requests of earlier activations still count"
    );
    disk.hold(false);
    disk.release(usize::MAX);
    assert!(
        wait_for(limit + 1) > limit,
        "served again once they completed"
    );
}

/// Posts READ(10) of one block at `lba` into a fresh buffer of 0xaa
/// bytes and waits until the LUN has it; returns the buffer.
fn post_held_read(d: &mut Driver, disk: &RamDisk, lba: u8, submitted: usize) -> u64 {
    let din = d.alloc(512);
    d.mem.write_slice(&[0xaa; 512], GuestAddress(din)).unwrap();
    post_read(d, lba, din);
    d.kick(REQUESTQ);
    let t = std::time::Instant::now();
    while disk.submitted().len() < submitted {
        assert!(t.elapsed() < Duration::from_secs(5), "not submitted");
        std::thread::sleep(Duration::from_millis(1));
    }
    din
}

/// A reset returns only once the backend is done with the device's
/// reads: afterwards the driver owns its buffers again, and no read data
/// lands in them.
#[test]
fn reset_waits_for_reads_held_by_the_backend() {
    let (mut d, disk) = setup(false);
    disk.hold(true);
    let din = post_held_read(&mut d, &disk, 3, 1);
    let (f, returned) = (d.f.clone(), Arc::new(AtomicBool::new(false)));
    let r = returned.clone();
    let t = std::thread::spawn(move || {
        f.lock().unwrap().bar_write(
            crate::virtio::pci::MODERN_BAR,
            crate::virtio::transport::common::DEVICE_STATUS,
            &[0],
        );
        r.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(Duration::from_millis(200));
    let early = returned.load(Ordering::SeqCst);
    disk.hold(false);
    t.join().unwrap();
    assert!(!early, "the reset returned while the backend held a read");
    d.mem.write_slice(&[0x55; 512], GuestAddress(din)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        d.read(din, 512),
        vec![0x55; 512],
        "read data landed after the reset"
    );
}

/// A backend that never completes does not wedge the resetting vCPU.
#[test]
fn reset_waits_for_the_backend_only_so_long() {
    let bound = Duration::from_millis(300);
    let (mut d, disk) = setup_bounded(false, bound);
    disk.hold(true);
    post_held_read(&mut d, &disk, 3, 1);
    let start = std::time::Instant::now();
    d.reset();
    let took = start.elapsed();
    assert!(
        took >= bound && took < Duration::from_secs(5),
        "returned after {took:?}"
    );
    disk.hold(false);
    assert!(d
        .used_within(REQUESTQ, Duration::from_millis(100))
        .is_none());
}
