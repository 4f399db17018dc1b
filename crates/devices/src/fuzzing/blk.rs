//! virtio-blk requests: arbitrary chains (headers, types, sectors,
//! segment shapes) against a small RAM disk that checks what the device
//! asks of it.

use std::io;
use std::sync::Arc;

use super::driver::Machine;
use super::Cursor;
use crate::blockif::BlockInfo;
use crate::ramdisk::{Completion, Options, RamDisk};
use crate::virtio::blk::VirtioBlk;

/// The disk of an options byte: 1 read-only, 2 discard allowed, 4 4 KiB
/// logical sectors, 8 4 KiB physical sectors.
pub(super) fn disk_info(opts: u8) -> BlockInfo {
    let ss = if opts & 4 != 0 { 4096 } else { 512 };
    BlockInfo {
        size: DISK as u64,
        sector_size: ss,
        physical_sector_size: if opts & 8 != 0 { 4096 } else { ss },
        physical_sector_offset: 0,
        read_only: opts & 1 != 0,
        can_delete: opts & 2 != 0 && opts & 1 == 0,
    }
}

const DISK: usize = 64 << 10;

/// A RAM disk of [`disk_info`] completing every request at once, on the
/// submitting thread (deterministic; the devices release their queue
/// locks before submitting), that flags requests no device should make.
pub(super) fn checking_disk(opts: u8) -> io::Result<Arc<RamDisk>> {
    let strict = Options {
        completion: Completion::Inline,
        strict: true,
    };
    RamDisk::new(vec![0x5a; DISK], disk_info(opts), strict)
}

/// Input: the disk's options byte (see [`disk_info`]), then the
/// driver program of [`Machine`] (queue 0 is the request queue).
pub fn virtio_blk(data: &[u8]) {
    let mut c = Cursor(data);
    let Some(opts) = c.u8() else { return };
    let Ok(disk) = checking_disk(opts) else {
        return;
    };
    let dev = VirtioBlk::new(disk.clone(), "fuzz-serial");
    let Some(mut m) = Machine::start(Box::new(dev), &mut c) else {
        return;
    };
    if m.is_active() {
        m.post_chains(&mut c);
        m.wait_answered(&[0], || {});
    }
    m.finish();
    let v = disk.take_violation();
    assert!(
        v.is_none(),
        "virtio-blk asked the disk for {}",
        v.unwrap_or_default()
    );
}
