//! A RAM-backed [`BlockIo`]: the disk of unit tests and fuzz targets.
//!
//! [`Options`] choose how requests complete (at once on the submitter's
//! thread, deterministic for fuzzing; on a worker thread of the disk's
//! own, in order, as the real backend's queue; or on a thread per
//! request, so that completions race as on the real backend's pool) and
//! whether requests no device should make are flagged. Requests can be
//! held back so tests keep many in flight, and the disk records what it
//! was asked and what it ran.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use vm_memory::Bytes;

use crate::blockif::{BlockBuffers, BlockDone, BlockInfo, BlockIo, BlockOp, BlockRequest};

/// Where requests complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Completion {
    /// At once on the submitting thread (held ones by [`RamDisk::release`]).
    #[default]
    Inline,
    /// On one worker thread of the disk, in submission order.
    Worker,
    /// On a thread per request, in any order.
    Racing,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub completion: Completion,
    /// Requests no device should make (past the end, modifying a
    /// read-only disk, discard not offered, reads and writes without
    /// guest buffers of the request's length) fail with EIO and the first
    /// is kept for [`RamDisk::take_violation`]. Otherwise a request past
    /// the end fails with EINVAL and the rest are carried out.
    pub strict: bool,
}

/// A request as submitted: (op, byte offset, `len`, fua).
pub type Submitted = (BlockOp, u64, u64, bool);
/// A request as carried out: (op, byte offset, bytes).
pub type Executed = (BlockOp, u64, u64);

#[derive(Default)]
struct State {
    /// Submitted, not started: held (inline) or waiting for the worker.
    queue: VecDeque<(BlockRequest, BlockDone)>,
    /// Racing threads not started.
    waiting: usize,
    held: bool,
    closing: bool,
    submitted: Vec<Submitted>,
    executed: Vec<Executed>,
    violation: Option<String>,
}

struct Shared {
    info: BlockInfo,
    strict: bool,
    data: Mutex<Vec<u8>>,
    state: Mutex<State>,
    cv: Condvar,
}

pub struct RamDisk {
    shared: Arc<Shared>,
    completion: Completion,
    thread: Option<JoinHandle<()>>,
}

/// Bytes whose value is their 512-byte sector number (mod 256): any
/// misplaced transfer shows.
pub fn sector_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i / 512) as u8).collect()
}

/// The virtio storage tests' disk: `size` bytes of [`sector_bytes`],
/// 4 KiB physical sectors, read-only or discarding, racing completions.
#[cfg(test)]
pub(crate) fn racing_disk(size: usize, read_only: bool) -> Arc<RamDisk> {
    let info = BlockInfo {
        physical_sector_size: 4096,
        read_only,
        can_delete: !read_only,
        ..RamDisk::info_rw()
    };
    let racing = Options {
        completion: Completion::Racing,
        strict: false,
    };
    RamDisk::new(sector_bytes(size), info, racing).unwrap()
}

impl RamDisk {
    /// A disk holding `data`, with `info`'s other properties (its size
    /// is `data`'s).
    pub fn new(data: Vec<u8>, mut info: BlockInfo, opts: Options) -> io::Result<Arc<RamDisk>> {
        info.size = data.len() as u64;
        let shared = Arc::new(Shared {
            info,
            strict: opts.strict,
            data: Mutex::new(data),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let thread = match opts.completion {
            Completion::Worker => {
                let s = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("ramdisk".into())
                        .spawn(move || s.work())?,
                )
            }
            Completion::Inline | Completion::Racing => None,
        };
        Ok(Arc::new(RamDisk {
            shared,
            completion: opts.completion,
            thread,
        }))
    }

    /// Plain 512-byte-sector read-write disk that can discard.
    pub fn info_rw() -> BlockInfo {
        BlockInfo {
            size: 0,
            sector_size: 512,
            physical_sector_size: 512,
            physical_sector_offset: 0,
            read_only: false,
            can_delete: true,
        }
    }

    pub fn with_data<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        f(&mut self.shared.data.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Holds requests back (true) or lets them run. Inline, the held
    /// ones wait for [`RamDisk::release`].
    pub fn hold(&self, held: bool) {
        self.shared.state().held = held;
        self.shared.cv.notify_all();
    }

    /// Runs up to `n` requests that wait in the queue, on this thread.
    pub fn release(&self, n: usize) {
        for _ in 0..n {
            let Some((req, done)) = self.shared.state().queue.pop_front() else {
                return;
            };
            self.shared.complete(req, done);
        }
    }

    /// Requests submitted and not started.
    pub fn queued(&self) -> usize {
        let st = self.shared.state();
        st.queue.len() + st.waiting
    }

    /// Every request submitted so far, in order.
    pub fn submitted(&self) -> Vec<Submitted> {
        self.shared.state().submitted.clone()
    }

    /// Every request carried out so far, in order; reads and writes
    /// count their buffers' bytes.
    pub fn executed(&self) -> Vec<Executed> {
        self.shared.state().executed.clone()
    }

    /// The first request no device should make (strict disks).
    pub fn take_violation(&self) -> Option<String> {
        self.shared.state().violation.take()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&self) {
        loop {
            let (req, done) = {
                let mut st = self.state();
                loop {
                    if !st.held || st.closing {
                        if let Some(j) = st.queue.pop_front() {
                            break j;
                        }
                        if st.closing {
                            return;
                        }
                    }
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.complete(req, done);
        }
    }

    fn complete(&self, mut req: BlockRequest, done: BlockDone) {
        let r = self.execute(&mut req);
        let len = match req.op {
            BlockOp::Read | BlockOp::Write => req.buffers.len(),
            _ => req.len,
        };
        self.state().executed.push((req.op, req.offset, len));
        done(req, r);
    }

    /// Why no device should have made `r`, if so.
    fn violation(&self, r: &BlockRequest) -> Option<String> {
        let past_end = !matches!(r.offset.checked_add(r.len), Some(e) if e <= self.info.size);
        let guest = matches!(r.buffers, BlockBuffers::Guest { .. });
        match r.op {
            _ if past_end => Some(format!(
                "{:?} of {} at {} past the end",
                r.op, r.len, r.offset
            )),
            BlockOp::Read | BlockOp::Flush => None,
            _ if self.info.read_only => Some(format!("{:?} on a read-only disk", r.op)),
            BlockOp::Discard if !self.info.can_delete => Some("discard not offered".into()),
            _ => None,
        }
        .or_else(|| match r.op {
            BlockOp::Read | BlockOp::Write if !guest => {
                Some(format!("{:?} without guest buffers", r.op))
            }
            BlockOp::Read | BlockOp::Write if r.buffers.len() != r.len => Some(format!(
                "{:?}: {} bytes of buffers for {}",
                r.op,
                r.buffers.len(),
                r.len
            )),
            _ => None,
        })
    }

    fn execute(&self, req: &mut BlockRequest) -> io::Result<u64> {
        if self.strict {
            if let Some(why) = self.violation(req) {
                self.state().violation.get_or_insert(why);
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let size = data.len() as u64;
        let range = |off: u64, len: u64| -> io::Result<std::ops::Range<usize>> {
            match off.checked_add(len) {
                Some(end) if end <= size => Ok(off as usize..end as usize),
                _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            }
        };
        let fault = || io::Error::from_raw_os_error(libc::EFAULT);
        match req.op {
            BlockOp::Flush => Ok(0),
            BlockOp::Discard | BlockOp::WriteZeroes { .. } => {
                let r = range(req.offset, req.len)?;
                data[r].fill(0);
                Ok(req.len)
            }
            BlockOp::Read | BlockOp::Write => {
                let total = req.buffers.len();
                let mut at = range(req.offset, total)?.start;
                match &mut req.buffers {
                    BlockBuffers::Guest { mem, segs } => {
                        for (a, l) in segs.iter() {
                            let l = *l as usize;
                            let buf = &mut data[at..at + l];
                            if req.op == BlockOp::Read {
                                mem.write_slice(buf, *a).map_err(|_| fault())?;
                            } else {
                                mem.read_slice(buf, *a).map_err(|_| fault())?;
                            }
                            at += l;
                        }
                    }
                    BlockBuffers::Host(v) => {
                        let n = v.len();
                        if req.op == BlockOp::Read {
                            v.copy_from_slice(&data[at..at + n]);
                        } else {
                            data[at..at + n].copy_from_slice(v);
                        }
                    }
                    BlockBuffers::None => {}
                }
                Ok(total)
            }
        }
    }
}

impl BlockIo for RamDisk {
    fn info(&self) -> BlockInfo {
        self.shared.info
    }

    fn submit(&self, req: BlockRequest, done: BlockDone) {
        let mut st = self.shared.state();
        st.submitted.push((req.op, req.offset, req.len, req.fua));
        match self.completion {
            Completion::Inline if !st.held => {
                drop(st);
                self.shared.complete(req, done);
            }
            Completion::Inline | Completion::Worker => {
                st.queue.push_back((req, done));
                self.shared.cv.notify_all();
            }
            Completion::Racing => {
                st.waiting += 1;
                drop(st);
                let s = self.shared.clone();
                std::thread::spawn(move || {
                    let mut st = s.state();
                    while st.held && !st.closing {
                        st = s.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    st.waiting -= 1;
                    drop(st);
                    s.complete(req, done);
                });
            }
        }
    }
}

impl Drop for RamDisk {
    fn drop(&mut self) {
        // The worker and racing threads finish what was submitted.
        self.shared.state().closing = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(info: BlockInfo, completion: Completion, strict: bool) -> Arc<RamDisk> {
        let opts = Options { completion, strict };
        RamDisk::new(vec![0x5a; 64 << 10], info, opts).unwrap()
    }

    /// Submits a request without buffers; whether it was a violation.
    fn submit(d: &RamDisk, op: BlockOp, offset: u64, len: u64) -> bool {
        let req = BlockRequest {
            op,
            offset,
            len,
            buffers: BlockBuffers::None,
            fua: false,
        };
        d.submit(req, Box::new(|_, _| {}));
        d.take_violation().is_some()
    }

    #[test]
    fn strict_disk_flags_requests_no_device_should_make() {
        let rw = disk(RamDisk::info_rw(), Completion::Inline, true);
        assert!(!submit(&rw, BlockOp::Discard, 0, 4096));
        assert!(!submit(&rw, BlockOp::Flush, 0, 0));
        assert!(
            submit(&rw, BlockOp::Discard, 60 << 10, 8 << 10),
            "past the end"
        );
        assert!(submit(&rw, BlockOp::Read, 0, 512), "read without buffers");
        let ro_info = BlockInfo {
            read_only: true,
            can_delete: false,
            ..RamDisk::info_rw()
        };
        let ro = disk(ro_info, Completion::Inline, true);
        assert!(submit(&ro, BlockOp::WriteZeroes { unmap: false }, 0, 512));
        assert!(submit(&ro, BlockOp::Discard, 0, 512));
        let nodelete = BlockInfo {
            can_delete: false,
            ..RamDisk::info_rw()
        };
        assert!(submit(
            &disk(nodelete, Completion::Inline, true),
            BlockOp::Discard,
            0,
            512
        ));
    }

    #[test]
    fn lenient_disk_fails_only_past_the_end() {
        let d = disk(RamDisk::info_rw(), Completion::Inline, false);
        let res = Arc::new(Mutex::new(Vec::new()));
        for (off, len) in [(0, 512), (64 << 10, 512)] {
            let r = res.clone();
            let req = BlockRequest {
                op: BlockOp::WriteZeroes { unmap: false },
                offset: off,
                len,
                buffers: BlockBuffers::None,
                fua: false,
            };
            d.submit(req, Box::new(move |_, x| r.lock().unwrap().push(x.ok())));
        }
        assert_eq!(*res.lock().unwrap(), [Some(512), None]);
        assert!(d.with_data(|v| v[..512].iter().all(|&b| b == 0)));
        assert!(d.take_violation().is_none());
    }

    #[test]
    fn held_requests_wait_in_every_mode() {
        for mode in [Completion::Inline, Completion::Worker, Completion::Racing] {
            let d = disk(RamDisk::info_rw(), mode, false);
            d.hold(true);
            for i in 0..3 {
                submit(&d, BlockOp::Flush, i, 0);
            }
            let t = std::time::Instant::now();
            while d.queued() < 3 && t.elapsed().as_secs() < 5 {
                std::thread::yield_now();
            }
            assert_eq!(d.queued(), 3, "{mode:?}");
            assert_eq!(d.submitted().len(), 3, "{mode:?}");
            assert!(d.executed().is_empty(), "{mode:?}");
            if mode == Completion::Inline {
                d.release(2);
                assert_eq!(d.queued(), 1);
            }
            d.hold(false);
            d.release(usize::MAX);
            while d.executed().len() < 3 && t.elapsed().as_secs() < 5 {
                std::thread::yield_now();
            }
            assert_eq!(d.executed().len(), 3, "{mode:?}");
        }
    }
}
