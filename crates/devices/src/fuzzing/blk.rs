//! virtio-blk requests: arbitrary chains (headers, types, sectors,
//! segment shapes) against a small RAM disk that checks what the device
//! asks of it.

use std::sync::{Arc, Mutex};

use vm_memory::Bytes;

use super::driver::Machine;
use super::Cursor;
use crate::blockif::{BlockBuffers, BlockDone, BlockInfo, BlockIo, BlockOp, BlockRequest};
use crate::virtio::blk::VirtioBlk;

/// A RAM disk completing every request at once, on the submitting
/// thread (deterministic; the devices release their queue locks before
/// submitting). It records the first request no device should make.
pub(super) struct RamDisk {
    info: BlockInfo,
    data: Mutex<Vec<u8>>,
    pub violation: Mutex<Option<String>>,
}

impl RamDisk {
    /// Options byte: 1 read-only, 2 discard allowed, 4 4 KiB logical
    /// sectors, 8 4 KiB physical sectors.
    pub fn new(opts: u8) -> Arc<RamDisk> {
        let size = 64 << 10;
        let ss = if opts & 4 != 0 { 4096 } else { 512 };
        Arc::new(RamDisk {
            info: BlockInfo {
                size: size as u64,
                sector_size: ss,
                physical_sector_size: if opts & 8 != 0 { 4096 } else { ss },
                physical_sector_offset: 0,
                read_only: opts & 1 != 0,
                can_delete: opts & 2 != 0 && opts & 1 == 0,
            },
            data: Mutex::new(vec![0x5a; size]),
            violation: Mutex::new(None),
        })
    }

    fn exec(&self, r: &BlockRequest) -> Result<std::io::Result<u64>, String> {
        let size = self.info.size;
        let end = r.offset.checked_add(r.len).filter(|&e| e <= size);
        let Some(end) = end else {
            return Err(format!(
                "{:?} of {} at {} past the end",
                r.op, r.len, r.offset
            ));
        };
        let writes = !matches!(r.op, BlockOp::Read | BlockOp::Flush);
        if writes && self.info.read_only {
            return Err(format!("{:?} on a read-only disk", r.op));
        }
        if r.op == BlockOp::Discard && !self.info.can_delete {
            return Err("discard not offered".into());
        }
        let (off, end) = (r.offset as usize, end as usize);
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match (&r.op, &r.buffers) {
            (BlockOp::Read | BlockOp::Write, BlockBuffers::Guest { mem, segs }) => {
                if r.buffers.len() != r.len {
                    return Err(format!(
                        "{:?}: {} bytes of buffers for {}",
                        r.op,
                        r.buffers.len(),
                        r.len
                    ));
                }
                let mut at = off;
                for &(a, l) in segs {
                    let l = l as usize;
                    let res = if r.op == BlockOp::Read {
                        mem.write_slice(&data[at..at + l], a)
                    } else {
                        mem.read_slice(&mut data[at..at + l], a)
                    };
                    if res.is_err() {
                        return Ok(Err(std::io::Error::from_raw_os_error(libc::EFAULT)));
                    }
                    at += l;
                }
                Ok(r.len)
            }
            (BlockOp::Read | BlockOp::Write, _) => {
                return Err(format!("{:?} without guest buffers", r.op));
            }
            (BlockOp::Discard | BlockOp::WriteZeroes { .. }, _) => {
                data[off..end].fill(0);
                Ok(r.len)
            }
            (BlockOp::Flush, _) => Ok(0),
        })
    }
}

impl BlockIo for RamDisk {
    fn info(&self) -> BlockInfo {
        self.info
    }

    fn submit(&self, req: BlockRequest, done: BlockDone) {
        let res = match self.exec(&req) {
            Ok(r) => r,
            Err(why) => {
                self.violation
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(why);
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
        };
        done(req, res);
    }
}

/// Input: the disk's options byte (see [`RamDisk::new`]), then the
/// driver program of [`Machine`] (queue 0 is the request queue).
pub fn virtio_blk(data: &[u8]) {
    let mut c = Cursor(data);
    let Some(opts) = c.u8() else { return };
    let disk = RamDisk::new(opts);
    let dev = VirtioBlk::new(disk.clone(), "fuzz-serial");
    let Some(mut m) = Machine::start(Box::new(dev), &mut c) else {
        return;
    };
    if m.is_active() {
        m.post_chains(&mut c);
        m.wait_answered(&[0], || {});
    }
    m.finish();
    let v = disk
        .violation
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    assert!(
        v.is_none(),
        "virtio-blk asked the disk for {}",
        v.unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(d: &RamDisk, op: BlockOp, offset: u64, len: u64) -> bool {
        let req = BlockRequest {
            op,
            offset,
            len,
            buffers: BlockBuffers::None,
            fua: false,
        };
        d.submit(req, Box::new(|_, _| {}));
        d.violation.lock().unwrap().take().is_some()
    }

    #[test]
    fn ram_disk_flags_requests_no_device_should_make() {
        let rw = RamDisk::new(2);
        assert!(!submit(&rw, BlockOp::Discard, 0, 4096));
        assert!(!submit(&rw, BlockOp::Flush, 0, 0));
        assert!(
            submit(&rw, BlockOp::Discard, 60 << 10, 8 << 10),
            "past the end"
        );
        assert!(submit(&rw, BlockOp::Read, 0, 512), "read without buffers");
        let ro = RamDisk::new(1);
        assert!(submit(&ro, BlockOp::WriteZeroes { unmap: false }, 0, 512));
        assert!(submit(&ro, BlockOp::Discard, 0, 512));
    }
}
