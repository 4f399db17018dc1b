//! One request, synchronously, on a pool thread: scatter-gather reads
//! and writes (bounced through an aligned buffer when O_DIRECT cannot
//! take the guest's buffers), flush, discard and write-zeroes.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use bhyve_devices::blockif::{BlockBuffers, BlockInfo, BlockOp, BlockRequest};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use super::open::{BLKDISCARD, BLKZEROOUT};

/// Bytes of guest data per bounce round: bounds a request's host memory
/// however large the guest claims it is.
const BOUNCE_CHUNK: usize = 1 << 20;
/// The largest O_DIRECT alignment we expect any file system to want.
const MAX_DIO_ALIGN: u32 = 4096;
/// preadv/pwritev take at most IOV_MAX segments per call.
const IOV_MAX: usize = 1024;

pub(super) struct Disk {
    pub fd: OwnedFd,
    pub is_blk: bool,
    pub direct: bool,
    pub info: BlockInfo,
    /// O_DIRECT alignment of memory, offsets and lengths: starts at the
    /// device's sector size and rises to 4096 if the kernel says EINVAL.
    dio_align: AtomicU32,
    /// Read-modify-write rounds (O_DIRECT with unaligned offsets) take it
    /// exclusively, every other direct write shared: no write is lost
    /// between an RMW's read and its write.
    rmw: RwLock<()>,
    /// fdatasync calls made (tests check that FUA reaches the disk).
    #[cfg(test)]
    pub flushes: std::sync::atomic::AtomicU64,
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// A zeroed, aligned host buffer.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize, align: usize) -> io::Result<Self> {
        let layout =
            Layout::from_size_align(len.max(align), align).map_err(|_| err(libc::EINVAL))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(err(libc::ENOMEM));
        }
        Ok(Aligned { ptr, layout })
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: ptr is a live allocation of layout.size() bytes we own.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len.min(self.layout.size())) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Host iovecs for a request's buffers. Guest segments are split at
/// memory-region boundaries; anything outside RAM is EFAULT. The
/// pointers stay valid while `bufs` (which owns the guest memory handle
/// or the host buffer) lives.
fn iovecs(bufs: &mut BlockBuffers) -> io::Result<Vec<libc::iovec>> {
    let mut v = Vec::new();
    match bufs {
        BlockBuffers::None => {}
        BlockBuffers::Host(b) => v.push(libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        }),
        BlockBuffers::Guest { mem, segs } => {
            for &(addr, len) in segs.iter() {
                let (mut addr, mut left) = (addr, len);
                while left > 0 {
                    let r = mem.find_region(addr).ok_or_else(|| err(libc::EFAULT))?;
                    let off = addr.0 - r.start_addr().0;
                    let n = left.min(r.len() - off);
                    let p = r
                        .get_host_address(MemoryRegionAddress(off))
                        .map_err(|_| err(libc::EFAULT))?;
                    v.push(libc::iovec {
                        iov_base: p.cast(),
                        iov_len: usize::try_from(n).map_err(|_| err(libc::EINVAL))?,
                    });
                    addr = addr.checked_add(n).ok_or_else(|| err(libc::EFAULT))?;
                    left -= n;
                }
            }
        }
    }
    Ok(v)
}

/// Copies between `buf` and the iovec list starting `at` bytes into it.
fn copy_iov(iov: &[libc::iovec], mut at: usize, buf: &mut [u8], to_iov: bool) {
    let mut done = 0;
    for v in iov {
        if done == buf.len() {
            break;
        }
        if at >= v.iov_len {
            at -= v.iov_len;
            continue;
        }
        let n = (v.iov_len - at).min(buf.len() - done);
        // SAFETY: `v` points at n+at valid bytes (guest RAM or a host
        // buffer kept alive by the request), `buf` at done+n.
        unsafe {
            let p = v.iov_base.cast::<u8>().add(at);
            if to_iov {
                std::ptr::copy_nonoverlapping(buf.as_ptr().add(done), p, n);
            } else {
                std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr().add(done), n);
            }
        }
        done += n;
        at = 0;
    }
}

impl Disk {
    pub(super) fn new(
        fd: OwnedFd,
        is_blk: bool,
        direct: bool,
        info: BlockInfo,
        dev_sector: u32,
    ) -> Self {
        Disk {
            fd,
            is_blk,
            direct,
            info,
            dio_align: AtomicU32::new(dev_sector.clamp(512, MAX_DIO_ALIGN)),
            rmw: RwLock::new(()),
            #[cfg(test)]
            flushes: Default::default(),
        }
    }

    pub(super) fn execute(&self, req: &mut BlockRequest) -> io::Result<u64> {
        let write = matches!(
            req.op,
            BlockOp::Write | BlockOp::Discard | BlockOp::WriteZeroes { .. }
        );
        if write && self.info.read_only {
            return Err(err(libc::EROFS));
        }
        match req.op {
            BlockOp::Read | BlockOp::Write => {
                let iov = iovecs(&mut req.buffers)?;
                let total: u64 = iov.iter().map(|v| v.iov_len as u64).sum();
                if req
                    .offset
                    .checked_add(total)
                    .is_none_or(|e| e > i64::MAX as u64)
                {
                    return Err(err(libc::EINVAL));
                }
                let n = self.rw(req.op == BlockOp::Write, req.offset, &iov, total)?;
                if req.op == BlockOp::Write && req.fua {
                    self.flush()?;
                }
                Ok(n)
            }
            BlockOp::Flush => self.flush().map(|()| 0),
            BlockOp::Discard => {
                if !self.info.can_delete {
                    return Err(err(libc::EOPNOTSUPP));
                }
                self.range_op(req.offset, req.len, true)
            }
            BlockOp::WriteZeroes { unmap } => {
                let punch = unmap && self.info.can_delete && !self.is_blk;
                let n = match self.range_op(req.offset, req.len, punch) {
                    Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                        self.write_zero_buffers(req.offset, req.len)
                    }
                    r => r,
                }?;
                // Zeroes are data too: NVMe's Write Zeroes with FUA (or a
                // disabled write cache) is acknowledged as stable.
                if req.fua {
                    self.flush()?;
                }
                Ok(n)
            }
        }
    }

    fn flush(&self) -> io::Result<()> {
        #[cfg(test)]
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::fdatasync(self.fd.as_raw_fd()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Discard (`punch`) or zero `len` bytes at `off` with the kernel's
    /// own operation for files or block devices.
    fn range_op(&self, off: u64, len: u64, punch: bool) -> io::Result<u64> {
        let end = off.checked_add(len).ok_or_else(|| err(libc::EINVAL))?;
        if end > i64::MAX as u64 {
            return Err(err(libc::EINVAL));
        }
        if len == 0 {
            return Ok(0);
        }
        let fd = self.fd.as_raw_fd();
        let r = if self.is_blk {
            let range = [off, len];
            let req = if punch { BLKDISCARD } else { BLKZEROOUT };
            // SAFETY: both ioctls read two u64 from the pointer.
            unsafe { libc::ioctl(fd, req as _, range.as_ptr()) }
        } else {
            let mode = libc::FALLOC_FL_KEEP_SIZE
                | if punch {
                    libc::FALLOC_FL_PUNCH_HOLE
                } else {
                    libc::FALLOC_FL_ZERO_RANGE
                };
            // SAFETY: plain syscall; the range was checked above.
            unsafe { libc::fallocate(fd, mode, off as i64, len as i64) }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // Older kernels and some file systems say so differently.
            if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::ENOSYS)) {
                return Err(err(libc::EOPNOTSUPP));
            }
            return Err(e);
        }
        Ok(len)
    }

    fn write_zero_buffers(&self, mut off: u64, len: u64) -> io::Result<u64> {
        let mut zero = Aligned::new(BOUNCE_CHUNK, MAX_DIO_ALIGN as usize)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(BOUNCE_CHUNK as u64) as usize;
            let b = zero.slice(n);
            let iov = [libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: n,
            }];
            self.rw(true, off, &iov, n as u64)?;
            off += n as u64;
            left -= n as u64;
        }
        Ok(len)
    }

    fn aligned(&self, off: u64, iov: &[libc::iovec], align: u32) -> bool {
        let a = align as u64;
        off.is_multiple_of(a)
            && iov.iter().all(|v| {
                (v.iov_base as u64).is_multiple_of(a) && (v.iov_len as u64).is_multiple_of(a)
            })
    }

    fn rw(&self, write: bool, off: u64, iov: &[libc::iovec], total: u64) -> io::Result<u64> {
        if !self.direct {
            return self.rw_direct(write, off, iov);
        }
        let align = self.dio_align.load(Ordering::Relaxed);
        if self.aligned(off, iov, align) {
            let r = {
                let _g = write.then(|| self.rmw.read().unwrap_or_else(|e| e.into_inner()));
                self.rw_direct(write, off, iov)
            };
            match r {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && align < MAX_DIO_ALIGN => {
                    log::debug!("block: O_DIRECT wants more than {align}-byte alignment");
                    self.dio_align.store(MAX_DIO_ALIGN, Ordering::Relaxed);
                }
                r => return r,
            }
        }
        self.rw_bounced(write, off, iov, total)
    }

    /// preadv/pwritev until done; a read stops at end of file (the rest
    /// reads as zeroes, as beyond the end of a sparse disk).
    fn rw_direct(&self, write: bool, off: u64, iov: &[libc::iovec]) -> io::Result<u64> {
        let fd = self.fd.as_raw_fd();
        let mut local: Vec<libc::iovec> = iov.to_vec();
        let mut start = 0;
        let mut done = 0u64;
        while start < local.len() {
            if local[start].iov_len == 0 {
                start += 1;
                continue;
            }
            let cnt = (local.len() - start).min(IOV_MAX);
            let p = local[start..].as_ptr();
            let at = (off + done) as libc::off_t;
            // SAFETY: `p` points at `cnt` iovecs describing live memory.
            let n = unsafe {
                if write {
                    libc::pwritev(fd, p, cnt as i32, at)
                } else {
                    libc::preadv(fd, p, cnt as i32, at)
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                if write {
                    return Err(err(libc::EIO));
                }
                // End of file: zero what is left of the guest buffers.
                for v in &local[start..] {
                    // SAFETY: the iovec describes live memory.
                    unsafe { std::ptr::write_bytes(v.iov_base.cast::<u8>(), 0, v.iov_len) };
                }
                return Ok(done);
            }
            let mut n = n as usize;
            done += n as u64;
            while n > 0 && start < local.len() {
                let v = &mut local[start];
                let k = n.min(v.iov_len);
                // SAFETY: advancing within the same buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(k) }.cast();
                v.iov_len -= k;
                n -= k;
                if v.iov_len == 0 {
                    start += 1;
                }
            }
        }
        Ok(done)
    }

    /// O_DIRECT through an aligned buffer, a chunk at a time; writes that
    /// do not cover whole aligned blocks read-modify-write them.
    fn rw_bounced(
        &self,
        write: bool,
        off: u64,
        iov: &[libc::iovec],
        total: u64,
    ) -> io::Result<u64> {
        let a = self.dio_align.load(Ordering::Relaxed) as u64;
        let mut buf = Aligned::new(BOUNCE_CHUNK + 2 * a as usize, a as usize)?;
        let mut pos = 0u64;
        while pos < total {
            let n = (total - pos).min(BOUNCE_CHUNK as u64);
            let start = off + pos;
            let a0 = start / a * a;
            let a1 = (start + n).div_ceil(a) * a;
            let span = (a1 - a0) as usize;
            let head = (start - a0) as usize;
            let b = buf.slice(span);
            let one = [libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: span,
            }];
            if write {
                let partial = a0 != start || a1 != start + n;
                let _g = if partial {
                    Some(Ok(self.rmw.write().unwrap_or_else(|e| e.into_inner())))
                } else {
                    Some(Err(self.rmw.read().unwrap_or_else(|e| e.into_inner())))
                };
                if partial {
                    b.fill(0);
                    self.rw_direct(false, a0, &one)?;
                }
                copy_iov(iov, pos as usize, &mut b[head..head + n as usize], false);
                self.rw_direct(true, a0, &one)?;
            } else {
                b.fill(0);
                self.rw_direct(false, a0, &one)?;
                copy_iov(iov, pos as usize, &mut b[head..head + n as usize], true);
            }
            pos += n;
        }
        Ok(total)
    }

    /// The size now (a grown file or resized device).
    pub(super) fn current_size(&self) -> Option<u64> {
        if self.is_blk {
            super::open::blk_size(&self.fd).ok()
        } else {
            super::open::fstat(&self.fd)
                .ok()
                .map(|s| s.st_size.max(0) as u64)
        }
    }
}
