//! The controller driven through its PCI interface by a small NVMe
//! driver over fake guest memory, as a host driver would.

mod admin_features;
mod driver;
mod hostile;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::regs::{self, CC, CSTS};
use super::spec::{admin, feat, io, Command, Status};
use super::{NvmeParams, MSIX_BAR};
use crate::blockif::BlockOp;
use crate::pci::PciDevice;
use driver::*;

#[test]
fn pci_identity_and_bars() {
    let d = Drv::default();
    let f = d.f.lock().unwrap();
    assert_eq!(f.config().vendor_device(), (0xfb5d, 0x0a0a));
    let mut b = [0u8; 4];
    f.config().read(0x08, &mut b);
    assert_eq!(&b[1..4], &[0x02, 0x08, 0x01], "class 01/08/02");
    assert!(f.config().bar_size(0) >= 16 << 10);
    assert!(f.config().bar_size(MSIX_BAR) >= 17 * 16);
    assert!(f.config().msix_claims(MSIX_BAR, 16 * 16));
    assert!(!f.config().msix_claims(MSIX_BAR, 17 * 16));
}

#[test]
fn identify_controller_and_namespace() {
    let mut p = NvmeParams::bhyve_defaults(4, 0);
    p.serial = "MYSERIAL".into();
    p.eui64 = 0x1122_3344_5566_7788;
    p.sector_size = 4096;
    let mut d = Drv::new(p, ram_disk(1 << 20, true, false));
    d.enable();
    let (s, c) = d.identify(1, 0);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(&c[4..24], b"MYSERIAL            ");
    assert_eq!(&c[24..34], b"bhyve-NVMe");
    let (s, n) = d.identify(0, 1);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(u64::from_le_bytes(n[0..8].try_into().unwrap()), 256);
    assert_eq!(n[130], 12);
    assert_eq!(&n[120..128], &0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(d.identify(0, 2).0, Status::INVALID_NAMESPACE);
    assert_eq!(d.identify(0, 0xffff_ffff).0, Status::INVALID_NAMESPACE);
    let (_, l) = d.identify(2, 0);
    assert_eq!(&l[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let (s, desc) = d.identify(3, 1);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(desc[0], 1);
    assert_eq!(d.identify(0x55, 0).0, Status::INVALID_FIELD);
    // An identify into memory that does not exist.
    let c = d.admin(Command {
        opc: admin::IDENTIFY,
        prp1: 1 << 40,
        cdw10: 1,
        ..Default::default()
    });
    assert_eq!(c.status, Status::DATA_TRANSFER_ERROR);
    let c = d.admin(Command {
        opc: 0x7f,
        ..Default::default()
    });
    assert_eq!(c.status, Status::INVALID_OPCODE);
}

#[test]
fn number_of_queues_honours_maxq() {
    let mut p = NvmeParams::bhyve_defaults(4, 0);
    p.max_queues = 4;
    let mut d = Drv::new(p, ram_disk(1 << 20, true, false));
    d.enable();
    let c = d.admin(Command {
        opc: admin::SET_FEATURES,
        cdw10: feat::NUM_QUEUES.into(),
        cdw11: 63 | (63 << 16),
        ..Default::default()
    });
    assert_eq!(c.status, Status::SUCCESS);
    assert_eq!(c.dw0, 3 | (3 << 16));
    let again = d.admin(Command {
        opc: admin::SET_FEATURES,
        cdw10: feat::NUM_QUEUES.into(),
        cdw11: 0,
        ..Default::default()
    });
    assert_eq!(again.status, Status::SEQUENCE_ERROR);
    let g = d.admin(Command {
        opc: admin::GET_FEATURES,
        cdw10: feat::NUM_QUEUES.into(),
        ..Default::default()
    });
    assert_eq!(g.dw0, 3 | (3 << 16));
    // Queue 5 is beyond what was granted.
    let c = d.admin(Command {
        opc: admin::CREATE_CQ,
        prp1: 0x100000,
        cdw10: 5 | (15 << 16),
        cdw11: 3,
        ..Default::default()
    });
    assert_eq!(c.status, Status::INVALID_QID);
}

#[test]
fn queue_creation_and_deletion_errors() {
    let mut d = Drv::default();
    d.enable();
    let cq = |qid: u32, size: u32, cdw11: u32, prp1: u64| Command {
        opc: admin::CREATE_CQ,
        prp1,
        cdw10: qid | ((size - 1) << 16),
        cdw11,
        ..Default::default()
    };
    let st = |d: &mut Drv, c| d.admin(c).status;
    assert_eq!(st(&mut d, cq(0, 16, 3, 0x100000)), Status::INVALID_QID);
    assert_eq!(st(&mut d, cq(17, 16, 3, 0x100000)), Status::INVALID_QID);
    assert_eq!(
        st(&mut d, cq(1, 16, 2, 0x100000)),
        Status::INVALID_FIELD,
        "non-contiguous"
    );
    assert_eq!(
        st(&mut d, cq(1, 4096, 3, 0x100000)),
        Status::INVALID_QUEUE_SIZE
    );
    assert_eq!(
        st(&mut d, cq(1, 1, 3, 0x100000)),
        Status::INVALID_QUEUE_SIZE
    );
    assert_eq!(
        st(&mut d, cq(1, 16, 3 | (17 << 16), 0x100000)),
        Status::INVALID_VECTOR
    );
    assert_eq!(
        st(&mut d, cq(1, 16, 3, 0x100010)),
        Status::INVALID_FIELD,
        "offset"
    );
    assert_eq!(
        st(&mut d, cq(1, 16, 3, 1 << 40)),
        Status::INVALID_FIELD,
        "outside RAM"
    );
    assert_eq!(st(&mut d, cq(1, 16, 3, 0x100000)), Status::SUCCESS);
    assert_eq!(
        st(&mut d, cq(1, 16, 3, 0x110000)),
        Status::INVALID_QID,
        "exists"
    );
    let sq = |qid: u32, cqid: u32| Command {
        opc: admin::CREATE_SQ,
        prp1: 0x120000,
        cdw10: qid | (15 << 16),
        cdw11: 1 | (cqid << 16),
        ..Default::default()
    };
    assert_eq!(st(&mut d, sq(1, 2)), Status::CQ_INVALID);
    assert_eq!(st(&mut d, sq(1, 0)), Status::CQ_INVALID);
    assert_eq!(st(&mut d, sq(1, 1)), Status::SUCCESS);
    assert_eq!(st(&mut d, sq(1, 1)), Status::INVALID_QID);
    let del = |opc: u8, qid: u32| Command {
        opc,
        cdw10: qid,
        ..Default::default()
    };
    assert_eq!(
        st(&mut d, del(admin::DELETE_CQ, 1)),
        Status::INVALID_QUEUE_DELETION
    );
    assert_eq!(st(&mut d, del(admin::DELETE_SQ, 0)), Status::INVALID_QID);
    assert_eq!(st(&mut d, del(admin::DELETE_SQ, 2)), Status::INVALID_QID);
    assert_eq!(st(&mut d, del(admin::DELETE_SQ, 1)), Status::SUCCESS);
    assert_eq!(st(&mut d, del(admin::DELETE_CQ, 1)), Status::SUCCESS);
    assert_eq!(st(&mut d, del(admin::DELETE_CQ, 1)), Status::INVALID_QID);
}

#[test]
fn reads_and_writes_through_prp_lists() {
    let mut d = Drv::default();
    d.enable_msix();
    d.enable();
    d.create_pair(1, 16, 1);
    d.create_pair(2, 16, 2);
    // 5 pages from an offset in the first: PRP1 + a list of 5 entries.
    let pages = [0x500000u64, 0x507000, 0x503000, 0x509000, 0x50b000];
    let list = 0x600000u64;
    for (i, p) in pages.iter().enumerate() {
        d.mem
            .write_obj(*p, GuestAddress(list + 8 * i as u64))
            .unwrap();
    }
    let prp1 = 0x4ff800u64;
    let len = 40usize * 512;
    let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    // Scatter the pattern as the PRPs describe it.
    let mut segs = vec![(prp1, 0x800usize)];
    let mut left = len - 0x800;
    for p in pages {
        let n = left.min(4096);
        segs.push((p, n));
        left -= n;
    }
    let mut at = 0;
    for (a, n) in &segs {
        d.mem
            .write_slice(&pattern[at..at + n], GuestAddress(*a))
            .unwrap();
        at += n;
    }
    assert_eq!(d.rw(1, io::WRITE, 100, 40, prp1, list), Status::SUCCESS);
    assert_eq!(
        d.disk.with_data(|v| v[100 * 512..140 * 512].to_vec()),
        pattern
    );
    // Read it back through queue 2 into one contiguous buffer.
    let buf = 0x700000u64;
    let mut l2 = 0x610000u64;
    for i in 1..5u64 {
        d.mem.write_obj(buf + i * 4096, GuestAddress(l2)).unwrap();
        l2 += 8;
    }
    assert_eq!(d.rw(2, io::READ, 100, 40, buf, 0x610000), Status::SUCCESS);
    let mut back = vec![0u8; len];
    d.mem.read_slice(&mut back, GuestAddress(buf)).unwrap();
    assert_eq!(back, pattern);
    // Each queue signalled its own vector.
    assert!(
        d.irqs.wait_fired(&[0, 1, 2]),
        "{:?}",
        d.irqs.fired.lock().unwrap()
    );
    // SMART counts the commands.
    let c = d.admin(Command {
        opc: admin::GET_LOG_PAGE,
        nsid: 0xffff_ffff,
        prp1: DATA,
        cdw10: 2 | (127 << 16),
        ..Default::default()
    });
    assert_eq!(c.status, Status::SUCCESS);
    let mut smart = [0u8; 512];
    d.mem.read_slice(&mut smart, GuestAddress(DATA)).unwrap();
    assert_eq!(smart[64], 1, "host read commands");
    assert_eq!(smart[80], 1, "host write commands");
}

#[test]
fn bad_commands_and_prps() {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 16, 0);
    let blocks = (1u64 << 20) / 512;
    assert_eq!(
        d.rw(1, io::READ, blocks, 1, DATA, 0),
        Status::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        d.rw(1, io::READ, blocks - 1, 2, DATA, 0),
        Status::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        d.rw(1, io::READ, u64::MAX, 1, DATA, 0),
        Status::LBA_OUT_OF_RANGE
    );
    // More than MDTS (2 MiB).
    assert_eq!(
        d.rw(1, io::READ, 0, 0x10000, DATA, 0),
        Status::INVALID_FIELD
    );
    // PRP2 of a two-page transfer must be page aligned.
    assert_eq!(
        d.rw(1, io::READ, 0, 16, DATA, DATA + 0x1008),
        Status::INVALID_PRP_OFFSET
    );
    // A PRP list outside guest memory, data outside guest memory.
    assert_eq!(
        d.rw(1, io::READ, 0, 24, DATA, 1 << 40),
        Status::DATA_TRANSFER_ERROR
    );
    assert_eq!(
        d.rw(1, io::READ, 0, 1, 1 << 40, 0),
        Status::DATA_TRANSFER_ERROR
    );
    // SGLs, fused commands, other namespaces, unknown opcodes.
    let c = d.io(
        1,
        Command {
            opc: io::READ,
            flags: 0x40,
            prp1: DATA,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::INVALID_FIELD);
    let c = d.io(
        1,
        Command {
            opc: 0x55,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::INVALID_OPCODE);
    let cid = d.put(
        1,
        Command {
            opc: io::READ,
            nsid: 2,
            ..Default::default()
        },
    );
    d.ring(1);
    let c = d.reap(1);
    d.consume(1);
    assert_eq!((c.cid, c.status), (cid, Status::INVALID_NAMESPACE));
    assert_eq!(c.sqid, 1);
    // Garbage doorbells: out-of-range values and queues are ignored.
    d.w32(regs::DOORBELLS + 8, 1000);
    d.w32(regs::DOORBELLS + 8 * 9, 3);
    d.w32(regs::DOORBELLS + 8 + 4, 15);
    d.w32(0x3ffc, 0xffff_ffff);
    assert_eq!(d.rw(1, io::READ, 0, 1, DATA, 0), Status::SUCCESS);
}

#[test]
fn full_completion_queue_stalls_submission() {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 4, 0);
    // A second, larger SQ feeding the same tiny CQ.
    let c = d.admin(Command {
        opc: admin::CREATE_SQ,
        prp1: 0x180000,
        cdw10: 2 | (15 << 16),
        cdw11: 1 | (1 << 16),
        ..Default::default()
    });
    assert_eq!(c.status, Status::SUCCESS);
    d.sqs[2] = Some(Queue {
        base: 0x180000,
        size: 16,
        idx: 0,
        phase: true,
    });
    for _ in 0..8 {
        d.put(
            2,
            Command {
                opc: io::FLUSH,
                nsid: 1,
                ..Default::default()
            },
        );
    }
    d.ring(2);
    // 3 completions fit in 4 entries; the rest wait for the host.
    let mut got = Vec::new();
    while let Some(c) = d.try_reap(1, Duration::from_millis(300)) {
        got.push(c);
    }
    assert_eq!(got.len(), 3);
    assert!(d.f.lock().unwrap().debug_state().1, "stalled");
    assert_eq!(got[2].sqhd, 3, "only three fetched");
    d.consume(1);
    for _ in 0..3 {
        got.push(d.reap(1));
    }
    d.consume(1);
    for _ in 0..2 {
        got.push(d.reap(1));
    }
    d.consume(1);
    assert_eq!(got.len(), 8);
    assert!(got
        .iter()
        .all(|c| c.status == Status::SUCCESS && c.sqid == 2));
    assert_eq!(got.last().unwrap().sqhd, 8);
}

#[test]
fn ioslots_bound_commands_in_flight() {
    let mut p = NvmeParams::bhyve_defaults(4, 0);
    p.ioslots = 2;
    let mut d = Drv::new(p, ram_disk(1 << 20, true, false));
    d.enable();
    d.create_pair(1, 16, 0);
    d.disk.hold(true);
    for i in 0..5 {
        d.put(
            1,
            Command {
                opc: io::READ,
                nsid: 1,
                prp1: DATA + i * 4096,
                ..Default::default()
            },
        );
    }
    d.ring(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.disk.queued() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(d.disk.queued(), 2);
    let mut done = 0;
    while done < 5 {
        d.disk.release(1);
        if let Some(c) = d.try_reap(1, Duration::from_millis(500)) {
            assert_eq!(c.status, Status::SUCCESS);
            done += 1;
            d.consume(1);
        }
        assert!(d.disk.queued() <= 2);
    }
    assert_eq!(d.f.lock().unwrap().debug_state().0, 0);
}

#[test]
fn flush_dsm_and_write_zeroes() {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 16, 0);
    let c = d.io(
        1,
        Command {
            opc: io::FLUSH,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::SUCCESS);
    // Two ranges (and an empty one) deallocated.
    let ranges: [(u32, u64); 3] = [(8, 16), (0, 500), (4, 1000)];
    for (i, (nlb, slba)) in ranges.iter().enumerate() {
        let at = DATA + 16 * i as u64;
        d.mem.write_obj(*nlb, GuestAddress(at + 4)).unwrap();
        d.mem.write_obj(*slba, GuestAddress(at + 8)).unwrap();
    }
    let c = d.io(
        1,
        Command {
            opc: io::DSM,
            prp1: DATA,
            cdw10: 2,
            cdw11: 4,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::SUCCESS);
    d.disk.with_data(|data| {
        assert!(data[16 * 512..24 * 512].iter().all(|b| *b == 0));
        assert!(data[1000 * 512..1004 * 512].iter().all(|b| *b == 0));
        assert_eq!(data[24 * 512], 24);
    });
    // A range past the end fails the whole command.
    d.mem.write_obj(5000u64, GuestAddress(DATA + 8)).unwrap();
    let c = d.io(
        1,
        Command {
            opc: io::DSM,
            prp1: DATA,
            cdw10: 0,
            cdw11: 4,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::LBA_OUT_OF_RANGE);
    let c = d.io(
        1,
        Command {
            opc: io::WRITE_ZEROES,
            cdw10: 40,
            cdw12: 3,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::SUCCESS);
    assert!(d
        .disk
        .with_data(|v| v[40 * 512..44 * 512].iter().all(|b| *b == 0)));
    let ops = d.disk.submitted();
    assert_eq!(ops[0].0, BlockOp::Flush);
    assert_eq!(ops[1], (BlockOp::Discard, 16 * 512, 8 * 512, false));
    assert_eq!(ops[2], (BlockOp::Discard, 1000 * 512, 4 * 512, false));
    assert_eq!(
        ops[3],
        (
            BlockOp::WriteZeroes { unmap: false },
            40 * 512,
            4 * 512,
            false
        )
    );
    // Write Zeroes with FUA is acknowledged only once stable.
    let c = d.io(
        1,
        Command {
            opc: io::WRITE_ZEROES,
            cdw10: 40,
            cdw12: 3 | (1 << 30),
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::SUCCESS);
    assert!(d.disk.submitted()[4].3, "Write Zeroes FUA");
}

#[test]
fn dsm_follows_the_option() {
    use super::Dsm;
    for (dsm, can_delete, offered) in [
        (Dsm::Auto, true, true),
        (Dsm::Auto, false, false),
        (Dsm::Enable, false, true),
        (Dsm::Disable, true, false),
    ] {
        let mut p = NvmeParams::bhyve_defaults(4, 0);
        p.dsm = dsm;
        let mut d = Drv::new(p, ram_disk(1 << 20, can_delete, false));
        d.enable();
        let (_, c) = d.identify(1, 0);
        assert_eq!(c[520] & 4 != 0, offered, "{dsm:?} {can_delete}");
        d.create_pair(1, 16, 0);
        d.mem.write_obj(8u32, GuestAddress(DATA + 4)).unwrap();
        d.mem.write_obj(0u64, GuestAddress(DATA + 8)).unwrap();
        let c = d.io(
            1,
            Command {
                opc: io::DSM,
                prp1: DATA,
                cdw11: 4,
                ..Default::default()
            },
        );
        let want = if offered {
            Status::SUCCESS
        } else {
            Status::INVALID_OPCODE
        };
        assert_eq!(c.status, want);
        // No discard reaches a backend that cannot.
        let discards = d
            .disk
            .submitted()
            .iter()
            .filter(|o| o.0 == BlockOp::Discard)
            .count();
        assert_eq!(discards, usize::from(offered && can_delete));
    }
}

#[test]
fn features_and_write_cache() {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 16, 0);
    let set = |d: &mut Drv, fid: u8, v: u32| {
        d.admin(Command {
            opc: admin::SET_FEATURES,
            cdw10: fid.into(),
            cdw11: v,
            ..Default::default()
        })
        .status
    };
    let get = |d: &mut Drv, fid: u8, sel: u32| {
        d.admin(Command {
            opc: admin::GET_FEATURES,
            cdw10: u32::from(fid) | (sel << 8),
            ..Default::default()
        })
    };
    assert_eq!(get(&mut d, feat::VOLATILE_WC, 0).dw0, 1);
    assert_eq!(d.rw(1, io::WRITE, 0, 1, DATA, 0), Status::SUCCESS);
    assert_eq!(set(&mut d, feat::VOLATILE_WC, 0), Status::SUCCESS);
    assert_eq!(d.rw(1, io::WRITE, 0, 1, DATA, 0), Status::SUCCESS);
    let zeroes = Command {
        opc: io::WRITE_ZEROES,
        ..Default::default()
    };
    assert_eq!(d.io(1, zeroes).status, Status::SUCCESS);
    let ops = d.disk.submitted();
    assert_eq!(
        (ops[0].3, ops[1].3, ops[2].3),
        (false, true, true),
        "write through once WCE is off"
    );
    assert_eq!(set(&mut d, feat::IRQ_COALESCING, 0x0a05), Status::SUCCESS);
    assert_eq!(get(&mut d, feat::IRQ_COALESCING, 0).dw0, 0x0a05);
    assert_eq!(get(&mut d, feat::IRQ_COALESCING, 1).dw0, 0);
    assert_eq!(get(&mut d, feat::IRQ_COALESCING, 3).dw0, 4);
    assert_eq!(
        set(&mut d, feat::TEMP_THRESHOLD, 0x30_0000),
        Status::INVALID_FIELD
    );
    assert_eq!(set(&mut d, feat::POWER_MGMT, 1), Status::INVALID_FIELD);
    assert_eq!(set(&mut d, 0x77, 0), Status::INVALID_FIELD);
    assert_eq!(
        set(&mut d, feat::IRQ_VECTOR_CONFIG, 9),
        Status::INVALID_FIELD
    );
    assert_eq!(set(&mut d, feat::IRQ_VECTOR_CONFIG, 0), Status::SUCCESS);
    let c = d.admin(Command {
        opc: admin::SET_FEATURES,
        nsid: 1,
        cdw10: feat::ARBITRATION.into(),
        ..Default::default()
    });
    assert_eq!(c.status, Status::FEATURE_NOT_NS_SPECIFIC);
    let c = d.admin(Command {
        opc: admin::SET_FEATURES,
        cdw10: u32::from(feat::ARBITRATION) | (1 << 31),
        ..Default::default()
    });
    assert_eq!(c.status, Status::FEATURE_NOT_SAVEABLE);
}

#[test]
fn logs_abort_and_async_events() {
    let mut d = Drv::default();
    d.enable();
    let log = |d: &mut Drv, lid: u32, off: u32| {
        d.admin(Command {
            opc: admin::GET_LOG_PAGE,
            prp1: DATA,
            cdw10: lid | (127 << 16),
            cdw12: off,
            ..Default::default()
        })
        .status
    };
    assert_eq!(log(&mut d, 1, 0), Status::SUCCESS);
    assert_eq!(log(&mut d, 3, 0), Status::SUCCESS);
    assert_eq!(d.mem.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 1);
    assert_eq!(log(&mut d, 0x42, 0), Status::INVALID_LOG_PAGE);
    assert_eq!(log(&mut d, 2, 512), Status::INVALID_FIELD);
    let c = d.admin(Command {
        opc: admin::ABORT,
        cdw10: 1 | (5 << 16),
        ..Default::default()
    });
    assert_eq!((c.status, c.dw0), (Status::SUCCESS, 1));
    // Five AERs are held (AERL 4, zero-based); the sixth is refused.
    for _ in 0..5 {
        d.put(
            0,
            Command {
                opc: admin::ASYNC_EVENT,
                ..Default::default()
            },
        );
    }
    d.ring(0);
    assert!(d.try_reap(0, Duration::from_millis(200)).is_none());
    let c = d.admin(Command {
        opc: admin::ASYNC_EVENT,
        ..Default::default()
    });
    assert_eq!(c.status, Status::AER_LIMIT);
    // Held AERs do not use up completion slots: the admin queue works.
    for _ in 0..40 {
        assert_eq!(
            d.admin(Command {
                opc: admin::ABORT,
                ..Default::default()
            })
            .status,
            Status::SUCCESS
        );
    }
    let c = d.admin(Command {
        opc: admin::FORMAT_NVM,
        nsid: 1,
        cdw10: 1,
        ..Default::default()
    });
    assert_eq!(c.status, Status::INVALID_FORMAT);
    let c = d.admin(Command {
        opc: admin::FORMAT_NVM,
        nsid: 1,
        ..Default::default()
    });
    assert_eq!(c.status, Status::SUCCESS);
    assert!(d.disk.with_data(|v| v.iter().all(|b| *b == 0)));
}

#[test]
fn shutdown_disable_and_intx() {
    let mut d = Drv::default();
    d.enable();
    d.create_pair(1, 16, 0);
    // INTx (no MSI-X): asserted while a completion is unconsumed.
    let cid = d.put(
        1,
        Command {
            opc: io::FLUSH,
            nsid: 1,
            ..Default::default()
        },
    );
    d.ring(1);
    assert_eq!(d.reap(1).cid, cid);
    assert!(d.irqs.wait_intx(true));
    d.consume(1);
    assert!(!d.irqs.intx.load(Ordering::SeqCst));
    // Masked through INTMS.
    d.w32(regs::INTMS, 1);
    d.io(
        1,
        Command {
            opc: io::FLUSH,
            ..Default::default()
        },
    );
    assert!(!d.irqs.intx.load(Ordering::SeqCst));
    d.w32(regs::INTMC, 1);
    // Shutdown flushes, then reports complete.
    let cc = d.r32(CC);
    d.w32(CC, cc | (1 << 14));
    assert_eq!((d.r32(CSTS) >> 2) & 3, 2);
    assert_eq!(d.disk.submitted().last().unwrap().0, BlockOp::Flush);
    // Disable: not ready, queues gone, doorbells ignored.
    d.w32(CC, 0);
    assert_eq!(d.r32(CSTS), 0);
    d.put(
        1,
        Command {
            opc: io::FLUSH,
            nsid: 1,
            ..Default::default()
        },
    );
    d.ring(1);
    assert!(d.try_reap(1, Duration::from_millis(100)).is_none());
    // Enabled again, the controller starts over.
    d.cid = 0;
    d.enable();
    assert_eq!(d.identify(1, 0).0, Status::SUCCESS);
}

#[test]
fn read_only_namespace() {
    let mut d = Drv::new(
        NvmeParams::bhyve_defaults(4, 0),
        ram_disk(1 << 20, false, true),
    );
    d.enable();
    let (_, n) = d.identify(0, 1);
    assert_eq!(n[99], 1);
    d.create_pair(1, 16, 0);
    assert_eq!(
        d.rw(1, io::WRITE, 0, 1, DATA, 0),
        Status::NS_WRITE_PROTECTED
    );
    assert_eq!(d.rw(1, io::READ, 0, 1, DATA, 0), Status::SUCCESS);
    let c = d.io(
        1,
        Command {
            opc: io::WRITE_ZEROES,
            ..Default::default()
        },
    );
    assert_eq!(c.status, Status::NS_WRITE_PROTECTED);
}

#[test]
fn enable_with_bad_admin_queues_is_fatal() {
    let d = Drv::default();
    d.w32(regs::AQA, 31 | (31 << 16));
    d.w32(regs::ASQ, 0xfff_f000);
    d.w32(regs::ACQ, ACQ as u32);
    d.w32(CC, 1 | (6 << 16) | (4 << 20));
    assert_eq!(d.r32(CSTS) & 3, 2, "CFS, not ready");
}
