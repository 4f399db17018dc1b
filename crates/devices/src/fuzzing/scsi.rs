//! virtio-scsi: arbitrary request and task-management headers through
//! the transport, and arbitrary CDBs and UNMAP parameter lists straight
//! into the command set, whose answers are checked against the LUN.

use super::blk::{checking_disk, disk_info};
use super::driver::Machine;
use super::Cursor;
use crate::blockif::BlockOp;
use crate::virtio::scsi::target::{self, Action, LunInfo, MAX_TRANSFER_BYTES, MAX_UNMAP_BYTES};
use crate::virtio::scsi::{ScsiLun, VirtioScsi};

const CONTROLQ: usize = 0;
const REQUESTQ: usize = 2;

/// Input: the disk's options byte (see [`disk_info`]; 0x10 adds LUN
/// 1 over the same disk), then the driver program of [`Machine`]
/// (queue 0 control, 1 events, 2 requests; the configuration writes
/// reach cdb_size and sense_size).
pub fn virtio_scsi(data: &[u8]) {
    let mut c = Cursor(data);
    let Some(opts) = c.u8() else { return };
    let Ok(disk) = checking_disk(opts) else {
        return;
    };
    let mut luns = vec![ScsiLun {
        lun: 0,
        backend: disk.clone(),
        serial: "fuzz-serial".into(),
    }];
    if opts & 0x10 != 0 {
        luns.push(ScsiLun {
            lun: 1,
            backend: disk.clone(),
            serial: "fuzz-serial-1".into(),
        });
    }
    let Some(mut m) = Machine::start(Box::new(VirtioScsi::new(luns)), &mut c) else {
        return;
    };
    if m.is_active() {
        m.post_chains(&mut c);
        m.wait_answered(&[CONTROLQ, REQUESTQ], || {});
    }
    m.finish();
    let v = disk.take_violation();
    assert!(
        v.is_none(),
        "virtio-scsi asked the disk for {}",
        v.unwrap_or_default()
    );
}

/// Input: the disk's options byte (0x10: the LUN is absent), the CDB's
/// length byte and the CDB, then an UNMAP parameter list.
pub fn scsi_cdb(data: &[u8]) {
    let mut c = Cursor(data);
    let (Some(opts), Some(n)) = (c.u8(), c.u8()) else {
        return;
    };
    let cdb = c.take(n.into()).to_vec();
    let param = c.rest();
    let lun = LunInfo {
        info: disk_info(opts),
        serial: "fuzz-serial".into(),
    };
    let present = opts & 0x10 == 0;
    let action = target::decode(&cdb, present.then_some(&lun), &[0, 3, 16383]);
    let (bs, size) = (lun.block_size(), lun.info.size);
    let in_disk = |offset: u64, len: u64| {
        offset.is_multiple_of(bs)
            && len.is_multiple_of(bs)
            && offset.checked_add(len).is_some_and(|e| e <= size)
    };
    match action {
        Action::Io {
            op, offset, len, ..
        } => {
            assert!(present, "I/O for an absent LUN: {cdb:02x?}");
            assert!(in_disk(offset, len), "{op:?} {len}@{offset}: {cdb:02x?}");
            if op == BlockOp::Read || op == BlockOp::Write {
                assert!(len <= MAX_TRANSFER_BYTES, "{op:?} of {len}: {cdb:02x?}");
            }
            if op != BlockOp::Read && op != BlockOp::Flush {
                assert!(!lun.info.read_only, "{op:?} on a read-only LUN: {cdb:02x?}");
            }
        }
        Action::WriteSame {
            offset, len, unmap, ..
        } => {
            assert!(present && !lun.info.read_only, "WRITE SAME: {cdb:02x?}");
            assert!(
                in_disk(offset, len) && len <= MAX_UNMAP_BYTES,
                "WRITE SAME {len}@{offset}"
            );
            assert!(
                !unmap || lun.can_unmap(),
                "WRITE SAME UNMAP refused by the LUN"
            );
        }
        Action::Unmap { .. } => {
            assert!(present && lun.can_unmap(), "UNMAP: {cdb:02x?}");
            if let Ok(ranges) = target::unmap_ranges(&lun, param) {
                assert!(ranges.len() <= target::MAX_UNMAP_DESCRIPTORS);
                for (offset, len) in ranges {
                    assert!(
                        in_disk(offset, len) && len <= MAX_UNMAP_BYTES,
                        "UNMAP range {len}@{offset}"
                    );
                }
            }
        }
        Action::Data(v) => {
            let _ = v.len();
        }
        Action::Good | Action::Check(_) => {}
    }
    // The parameter list parser on its own, for any LUN.
    let _ = target::unmap_ranges(&lun, param);
}
