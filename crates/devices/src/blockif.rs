//! The contract between storage front ends (virtio-blk; later AHCI and
//! NVMe) and a block backend (bhyve's `blockif`): asynchronous requests
//! whose data lives in guest memory, completed through a callback on a
//! backend thread. The implementation lives in `bhyve-backends`
//! (`block::Blockif`); the front ends only see [`BlockIo`].

use std::io;

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// What the backend can do, fixed when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Size in bytes.
    pub size: u64,
    /// Logical sector size (512 unless `sectorsize=` or the device says
    /// otherwise).
    pub sector_size: u32,
    /// Physical sector size and the offset of the first aligned physical
    /// sector (0 when unknown).
    pub physical_sector_size: u32,
    pub physical_sector_offset: u32,
    pub read_only: bool,
    /// Discard is supported and allowed (not `nodelete`).
    pub can_delete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    Read,
    Write,
    /// Everything written so far is stable once this completes.
    Flush,
    /// `len` bytes at `offset` may be forgotten (they read as zeroes on
    /// the backends here).
    Discard,
    /// `len` bytes at `offset` read as zeroes afterwards; `unmap` allows
    /// deallocating them.
    WriteZeroes {
        unmap: bool,
    },
}

/// Where a request's data is.
pub enum BlockBuffers {
    None,
    /// Guest-physical segments, in order; the backend translates them
    /// (and fails the request with EFAULT for anything outside RAM).
    Guest {
        mem: GuestMemoryMmap,
        segs: Vec<(GuestAddress, u64)>,
    },
    /// A host buffer (emulated commands, tests).
    Host(Vec<u8>),
}

impl BlockBuffers {
    /// Total bytes (saturating: a guest can claim absurd lengths).
    pub fn len(&self) -> u64 {
        match self {
            BlockBuffers::None => 0,
            BlockBuffers::Guest { segs, .. } => {
                segs.iter().fold(0u64, |a, s| a.saturating_add(s.1))
            }
            BlockBuffers::Host(v) => v.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct BlockRequest {
    pub op: BlockOp,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Bytes for Discard/WriteZeroes; Read/Write use the buffers' length.
    pub len: u64,
    pub buffers: BlockBuffers,
    /// Write through (Write and WriteZeroes): the data is stable before
    /// completion (FUA commands, or drivers that did not negotiate a
    /// flush command).
    pub fua: bool,
}

/// Called once per request, on a backend thread, with the request back
/// (its buffers, for host data) and the bytes transferred or the error.
/// EOPNOTSUPP means "not supported" (virtio's UNSUPP), anything else an
/// I/O error.
pub type BlockDone = Box<dyn FnOnce(BlockRequest, io::Result<u64>) + Send>;

pub trait BlockIo: Send + Sync {
    fn info(&self) -> BlockInfo;
    /// Queues `req`; `done` runs when it finished (never on the caller's
    /// thread unless the backend is shutting down).
    fn submit(&self, req: BlockRequest, done: BlockDone);
    /// Like [`submit`](Self::submit), but the backend may run `req` on
    /// the caller's thread before returning: for a front end's lone
    /// request, which then skips the hand-off to another thread.
    fn submit_here(&self, req: BlockRequest, done: BlockDone) {
        self.submit(req, done)
    }
    /// The current size in bytes, re-read from the host (a grown file),
    /// or None when it cannot be read.
    fn refresh_size(&self) -> Option<u64> {
        None
    }
}
