//! Hostile-guest orderings: queue deletion, controller reset and
//! shutdown while commands are in the backend, MSI-X switched off with
//! completions pending.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::driver::*;
use crate::blockif::BlockOp;
use crate::nvme::regs::{CC, CSTS};
use crate::nvme::spec::{admin, io, Command, Status};

/// Waits (bounded) until the disk holds `n` requests.
fn wait_queued(d: &Drv, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.disk.queued() < n {
        assert!(
            Instant::now() < deadline,
            "{} requests queued",
            d.disk.queued()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Enables the controller again over a cleared admin CQ (its old
/// entries carry the phase tag the new pass starts with).
fn reenable(d: &mut Drv) {
    d.mem
        .write_slice(&[0u8; 32 * 16], GuestAddress(ACQ))
        .unwrap();
    d.cid = 0;
    d.enable();
}

/// An enabled controller with I/O queue pair 1 whose `cmd` sits in the
/// (held) disk; returns it and the command's id.
fn one_in_flight(cmd: Command) -> (Drv, u16) {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 16, 0);
    d.disk.hold(true);
    let cid = d.put(1, cmd);
    d.ring(1);
    wait_queued(&d, 1);
    (d, cid)
}

fn read(slba: u32, prp1: u64) -> Command {
    Command {
        opc: io::READ,
        nsid: 1,
        prp1,
        cdw10: slba,
        ..Default::default()
    }
}

#[test]
fn delete_sq_completes_after_its_commands() {
    let (mut d, cid) = one_in_flight(read(7, DATA));
    // Overwritten only once the held read is let go.
    d.mem.write_slice(&[0xee; 512], GuestAddress(DATA)).unwrap();
    let del = d.put(
        0,
        Command {
            opc: admin::DELETE_SQ,
            cdw10: 1,
            ..Default::default()
        },
    );
    d.ring(0);
    assert!(
        d.try_reap(0, Duration::from_millis(200)).is_none(),
        "Delete SQ completed with a read of that queue in flight"
    );
    // The SQ takes no more commands meanwhile.
    d.put(1, read(8, DATA + 4096));
    d.ring(1);
    d.disk.release(1);
    let c = d.reap(1);
    assert_eq!((c.cid, c.status), (cid, Status::SUCCESS));
    assert_eq!(d.mem.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 7);
    let c = d.reap(0);
    d.consume(0);
    assert_eq!((c.cid, c.status), (del, Status::SUCCESS));
    assert_eq!(
        d.disk.submitted().len(),
        1,
        "nothing fetched after the Delete"
    );
    // The queue is gone; its CQ can go too and the SQ can be re-created.
    let c = d.admin(Command {
        opc: admin::DELETE_CQ,
        cdw10: 1,
        ..Default::default()
    });
    assert_eq!(c.status, Status::SUCCESS);
    d.disk.hold(false);
    // (A fresh CQ: no stale phase tags from the first pass.)
    d.mem
        .write_slice(&[0u8; 16 * 16], GuestAddress(0x110000))
        .unwrap();
    d.create_pair(1, 16, 0);
    assert_eq!(d.rw(1, io::READ, 0, 1, DATA, 0), Status::SUCCESS);
}

#[test]
fn reset_keeps_ready_until_commands_in_flight_finish() {
    let (mut d, _) = one_in_flight(read(3, DATA));
    d.w32(CC, 0);
    assert_eq!(
        d.r32(CSTS) & 1,
        1,
        "RDY dropped while a read still writes guest memory"
    );
    d.disk.release(1);
    assert_eq!(d.r32(CSTS) & 1, 0, "reset done once the read finished");
    // Its completion went nowhere: the queues are gone.
    assert!(d.try_reap(1, Duration::from_millis(50)).is_none());
    d.disk.hold(false);
    reenable(&mut d);
    assert_eq!(d.identify(1, 0).0, Status::SUCCESS);
}

#[test]
fn enable_during_drain_waits_then_serves_the_admin_queue() {
    let (mut d, _) = one_in_flight(read(3, DATA));
    d.w32(CC, 0);
    // Enabled again at once, and the admin doorbell rung before RDY.
    d.w32(CC, 1 | (6 << 16) | (4 << 20));
    assert_eq!(d.r32(CSTS) & 1, 0, "not ready while the read is in flight");
    d.sqs[0].as_mut().unwrap().idx = 0;
    d.cqs[0] = Some(Queue {
        base: ACQ,
        size: 32,
        idx: 0,
        phase: true,
    });
    d.mem
        .write_slice(&[0u8; 32 * 16], GuestAddress(ACQ))
        .unwrap();
    let cid = d.put(
        0,
        Command {
            opc: admin::IDENTIFY,
            prp1: DATA + 0x10000,
            cdw10: 1,
            ..Default::default()
        },
    );
    d.ring(0);
    // Let the worker see that doorbell while not ready.
    std::thread::sleep(Duration::from_millis(100));
    d.disk.release(1);
    assert_eq!(d.r32(CSTS) & 1, 1);
    let c = d.reap(0);
    assert_eq!((c.cid, c.status), (cid, Status::SUCCESS));
}

#[test]
fn shutdown_flushes_after_writes_in_flight() {
    let (d, _) = one_in_flight(Command {
        opc: io::WRITE,
        nsid: 1,
        prp1: DATA,
        ..Default::default()
    });
    let cc = d.r32(CC);
    d.w32(CC, cc | (1 << 14));
    assert_eq!((d.r32(CSTS) >> 2) & 3, 1, "shutdown processing");
    assert!(
        !d.disk.submitted().iter().any(|o| o.0 == BlockOp::Flush),
        "flush issued while a write was in flight"
    );
    d.disk.release(1);
    assert_eq!(d.disk.submitted().last().unwrap().0, BlockOp::Flush);
    assert_eq!((d.r32(CSTS) >> 2) & 3, 1, "not complete before the flush");
    d.disk.release(1);
    assert_eq!((d.r32(CSTS) >> 2) & 3, 2, "shutdown complete");
}

#[test]
fn a_stale_shutdown_flush_does_not_complete_a_reset_controller() {
    let mut d = Drv::default();
    d.enable();
    d.disk.hold(true);
    let cc = d.r32(CC);
    d.w32(CC, cc | (1 << 14));
    wait_queued(&d, 1);
    // Reset with SHN still set (CC keeps it while disabled).
    d.w32(CC, (cc | (1 << 14)) & !1);
    d.disk.release(1);
    assert_eq!(d.r32(CSTS), 0, "SHST set on a reset controller");
}

#[test]
fn intx_follows_pending_completions_when_msix_goes_off() {
    let mut d = Drv::default();
    d.enable_msix();
    d.enable();
    d.create_pair(1, 16, 1);
    let cid = d.put(1, read(1, DATA));
    d.ring(1);
    assert_eq!(d.reap(1).cid, cid);
    assert!(d.irqs.wait_fired(&[1]));
    assert!(!d.irqs.intx.load(Ordering::SeqCst));
    // MSI-X off with the completion unconsumed: INTx takes over.
    d.disable_msix();
    assert!(d.irqs.wait_intx(true), "INTx low with a completion pending");
    d.consume(1);
    assert!(d.irqs.wait_intx(false));
}
