//! Block backend (bhyve's `block_if.c`): a backing file or block device
//! behind [`bhyve_devices::blockif::BlockIo`], shared by the storage
//! front ends (virtio-blk now; AHCI and NVMe later).
//!
//! Options are bhyve's: `nocache` (O_DIRECT), `direct`/`sync` (O_SYNC),
//! `ro` (and read-only when a read-write open fails), `sectorsize=l[/p]`
//! (powers of two, 512 ≤ l ≤ p, and a multiple of a block device's own
//! sector size), `nodelete` (no discard).
//!
//! Asynchronous I/O: a pool of [`pool::THREADS`] (8, bhyve's number)
//! threads serving one request queue; each request is a blocking
//! preadv/pwritev/fdatasync/fallocate/ioctl on its thread and completes
//! through the front end's callback. Why threads and not io_uring: the
//! pool needs nothing beyond POSIX calls, handles every operation the
//! same way (io_uring has no BLKDISCARD on the kernels we meet, and
//! fallocate/fdatasync through it are executed by kernel workers
//! anyway), and with 8 threads it keeps 8 requests in the kernel at
//! once, which saturates a file on a page-cache-backed or NVMe host for
//! the queue depths a guest uses (bhyve makes the same choice). If the
//! benchmarks (docs/PERFORMANCE.md) show the thread hand-off dominating
//! small random I/O, io_uring can replace `pool` without touching the
//! [`BlockIo`] contract.
//!
//! O_DIRECT: buffers, offsets and lengths must be aligned (the device's
//! sector size, or 4096 once the kernel refused less). A request that is
//! not goes through an aligned bounce buffer, 1 MiB at a time so a guest
//! cannot make us allocate more; writes that do not cover whole aligned
//! blocks read-modify-write them, serialized against other writes.
//!
//! Flush is fdatasync and completes only after it returned. Discard is a
//! hole punch (FALLOC_FL_PUNCH_HOLE|KEEP_SIZE) on files and BLKDISCARD
//! on block devices (advertised only when sysfs says the device
//! discards); write-zeroes is FALLOC_FL_ZERO_RANGE or BLKZEROOUT, with
//! written zero buffers where the kernel cannot.

mod io;
mod open;
mod pool;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bhyve_devices::blockif::{BlockDone, BlockInfo, BlockIo, BlockRequest};

pub use open::{default_serial, parse_sectorsize, BlockOptions};

/// Why a backing store could not be used; messages are bhyve's.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("Invalid sector size \"{0}\"")]
    BadSectorSize(String),
    #[error("Invalid sector size {0}/{1}")]
    SectorSizeRange(u32, u32),
    #[error("Sector size {0} incompatible with underlying device sector size {1}")]
    SectorSizeIncompatible(u32, u32),
    #[error("Could not open backing file: {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("Could not stat backing file {path}: {source}")]
    Stat {
        path: String,
        source: std::io::Error,
    },
    #[error("Could not fetch dev blk/sector size: {source}")]
    DeviceSize { source: std::io::Error },
    #[error("{0}: not a regular file or block device")]
    NotADisk(String),
    #[error("cannot start block I/O threads: {0}")]
    Threads(std::io::Error),
}

/// An open backing store and its I/O threads. Dropping it finishes the
/// queued requests and stops the threads.
pub struct Blockif {
    disk: Arc<io::Disk>,
    pool: pool::Pool,
}

impl Blockif {
    /// Opens `opts.path`; `ident` names the threads (`blk-<ident>-<n>`,
    /// bhyve uses "slot:function").
    pub fn open(opts: &BlockOptions, ident: &str) -> Result<Blockif, BlockError> {
        let o = open::open(opts)?;
        let disk = Arc::new(io::Disk::new(
            o.fd,
            o.is_blk,
            opts.nocache,
            o.info,
            o.dev_sector,
        ));
        let pool = pool::Pool::start(disk.clone(), ident).map_err(BlockError::Threads)?;
        Ok(Blockif { disk, pool })
    }

    #[cfg(test)]
    fn flushes(&self) -> u64 {
        self.disk.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl BlockIo for Blockif {
    fn info(&self) -> BlockInfo {
        self.disk.info
    }

    fn submit(&self, req: BlockRequest, done: BlockDone) {
        self.pool.submit(req, done)
    }

    fn submit_here(&self, mut req: BlockRequest, done: BlockDone) {
        let r = self.disk.execute(&mut req);
        done(req, r)
    }

    fn refresh_size(&self) -> Option<u64> {
        self.disk.current_size()
    }
}
