//! Admin features a driver reads back: temperature thresholds, and the
//! asynchronous events with the error information log.

use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::driver::*;
use crate::nvme::regs;
use crate::nvme::spec::{admin, feat, Command, Status};

/// Temperature Threshold (FID 04h): separate over and under thresholds
/// of the composite sensor, chosen by THSEL in CDW11 for Set and Get;
/// a sensor the controller does not have is an invalid field.
#[test]
fn temperature_thresholds_follow_tmpsel_and_thsel() {
    let mut d = Drv::default();
    d.enable();
    let feature = |d: &mut Drv, opc: u8, sel: u32, cdw11: u32| {
        let c = d.admin(Command {
            opc,
            cdw10: u32::from(feat::TEMP_THRESHOLD) | (sel << 8),
            cdw11,
            ..Default::default()
        });
        (c.status, c.dw0 & 0xffff)
    };
    const OVER: u32 = 0;
    const UNDER: u32 = 1 << 20;
    let (_, c) = d.identify(1, 0);
    let wctemp = u32::from(u16::from_le_bytes([c[266], c[267]]));
    assert_eq!(wctemp, 0x157);
    // Defaults: over = WCTEMP, under = 0 K.
    let get = |d: &mut Drv, sel, th| feature(d, admin::GET_FEATURES, sel, th);
    assert_eq!(get(&mut d, 0, OVER), (Status::SUCCESS, wctemp));
    assert_eq!(get(&mut d, 0, UNDER), (Status::SUCCESS, 0));
    let set = |d: &mut Drv, v| feature(d, admin::SET_FEATURES, 0, v).0;
    assert_eq!(set(&mut d, OVER | 0x160), Status::SUCCESS);
    assert_eq!(set(&mut d, UNDER | 0x105), Status::SUCCESS);
    assert_eq!(get(&mut d, 0, OVER), (Status::SUCCESS, 0x160));
    assert_eq!(get(&mut d, 0, UNDER), (Status::SUCCESS, 0x105));
    // "All sensors" (TMPSEL Fh) in a Set means the composite one here.
    assert_eq!(set(&mut d, (0xf << 16) | UNDER | 0x110), Status::SUCCESS);
    assert_eq!(get(&mut d, 0, UNDER), (Status::SUCCESS, 0x110));
    // Default and saved values stay the controller's.
    assert_eq!(get(&mut d, 1, OVER), (Status::SUCCESS, wctemp));
    assert_eq!(get(&mut d, 2, UNDER), (Status::SUCCESS, 0));
    // Sensors 1-8 are not implemented; 9-Eh are reserved.
    for tmpsel in [1u32, 8, 9] {
        assert_eq!(set(&mut d, (tmpsel << 16) | 0x120), Status::INVALID_FIELD);
        assert_eq!(get(&mut d, 0, tmpsel << 16).0, Status::INVALID_FIELD);
    }
    assert_eq!(get(&mut d, 0, 2 << 20).0, Status::INVALID_FIELD, "THSEL 2");
    // Nothing above changed the composite thresholds.
    assert_eq!(get(&mut d, 0, OVER), (Status::SUCCESS, 0x160));
    assert_eq!(get(&mut d, 0, UNDER), (Status::SUCCESS, 0x110));
}

/// The Error Information log page (01h, 64 bytes: one entry).
fn error_log(d: &mut Drv, rae: bool) -> [u8; 64] {
    let c = d.admin(Command {
        opc: admin::GET_LOG_PAGE,
        prp1: DATA,
        cdw10: 1 | (u32::from(rae) << 15) | (15 << 16),
        ..Default::default()
    });
    assert_eq!(c.status, Status::SUCCESS);
    let mut b = [0u8; 64];
    d.mem.read_slice(&mut b, GuestAddress(DATA)).unwrap();
    b
}

fn aer(d: &mut Drv) -> u16 {
    let cid = d.put(
        0,
        Command {
            opc: admin::ASYNC_EVENT,
            ..Default::default()
        },
    );
    d.ring(0);
    cid
}

/// Completion dword 0 of an Error status event with `info`, log 01h.
fn error_event(info: u32) -> u32 {
    (info << 8) | (1 << 16)
}

/// Invalid doorbell writes raise an Asynchronous Event of type Error
/// status (NVMe 1.4 Figure 146: info 00h, a doorbell of a queue that
/// does not exist; 01h, an invalid value) with an Error Information log
/// entry; the event type stays masked until the log is read with RAE=0,
/// and an event with no request outstanding waits for the next one.
#[test]
fn invalid_doorbells_raise_error_events() {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 16, 0);
    assert_eq!(
        u64::from_le_bytes(error_log(&mut d, false)[..8].try_into().unwrap()),
        0
    );
    let cid = aer(&mut d);
    assert!(d.try_reap(0, Duration::from_millis(100)).is_none());
    // SQ 5 was never created.
    d.w32(regs::DOORBELLS + 8 * 5, 1);
    let c = d.reap(0);
    d.consume(0);
    assert_eq!((c.cid, c.status), (cid, Status::SUCCESS));
    assert_eq!(c.dw0, error_event(0));
    let log = error_log(&mut d, true);
    assert_eq!(
        u64::from_le_bytes(log[..8].try_into().unwrap()),
        1,
        "error count"
    );
    assert_eq!(&log[8..12], &[0xff; 4], "no command: SQID and CID FFFFh");
    // Masked while the log is retained (RAE=1): a tail beyond the SQ's
    // size is logged but not reported.
    let cid = aer(&mut d);
    d.w32(regs::DOORBELLS + 8, 16);
    assert!(d.try_reap(0, Duration::from_millis(200)).is_none());
    let log = error_log(&mut d, false);
    assert_eq!(u64::from_le_bytes(log[..8].try_into().unwrap()), 2);
    // Cleared: a CQ head beyond what was posted is reported.
    d.w32(regs::DOORBELLS + 8 + 4, 3);
    let c = d.reap(0);
    d.consume(0);
    assert_eq!((c.cid, c.dw0), (cid, error_event(1)));
    error_log(&mut d, false);
    // No request outstanding: the event waits for one.
    d.w32(regs::DOORBELLS + 8 * 9 + 4, 0);
    let cid = aer(&mut d);
    let c = d.reap(0);
    d.consume(0);
    assert_eq!((c.cid, c.dw0), (cid, error_event(0)));
    // The queues still work.
    assert_eq!(
        d.rw(1, crate::nvme::spec::io::READ, 0, 1, DATA, 0),
        Status::SUCCESS
    );
}
