//! A RAM-backed [`BlockIo`]: the disk of unit tests and fuzz targets,
//! with the real backend's threading (requests complete on a thread of
//! its own, never the submitter's) and a switch that holds requests back
//! so tests can keep many in flight.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use vm_memory::Bytes;

use crate::blockif::{BlockBuffers, BlockDone, BlockInfo, BlockIo, BlockOp, BlockRequest};

#[derive(Default)]
struct State {
    jobs: VecDeque<(BlockRequest, BlockDone)>,
    held: bool,
    closing: bool,
    /// Operations seen, in order (tests).
    log: Vec<(BlockOp, u64, u64)>,
}

struct Shared {
    data: Mutex<Vec<u8>>,
    state: Mutex<State>,
    cv: Condvar,
}

pub struct RamDisk {
    info: BlockInfo,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RamDisk {
    /// A disk of `size` bytes (at most 64 MiB: it is for tests) with
    /// `info`'s other properties.
    pub fn new(size: usize, mut info: BlockInfo) -> io::Result<RamDisk> {
        let size = size.min(64 << 20);
        info.size = size as u64;
        let shared = Arc::new(Shared {
            data: Mutex::new(vec![0; size]),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ramdisk".into())
            .spawn(move || run(s))?;
        Ok(RamDisk {
            info,
            shared,
            thread: Some(thread),
        })
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

    /// Holds requests in the queue (true) or lets them run.
    pub fn hold(&self, held: bool) {
        self.state().held = held;
        self.shared.cv.notify_all();
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.state().jobs.len()
    }

    /// Operations executed so far: (op, offset, bytes).
    pub fn log(&self) -> Vec<(BlockOp, u64, u64)> {
        self.state().log.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn run(s: Arc<Shared>) {
    loop {
        let (mut req, done) = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if !st.held || st.closing {
                    if let Some(j) = st.jobs.pop_front() {
                        break j;
                    }
                    if st.closing {
                        return;
                    }
                }
                st = s.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let r = execute(&s, &mut req);
        let len = match req.op {
            BlockOp::Read | BlockOp::Write => req.buffers.len(),
            _ => req.len,
        };
        s.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .push((req.op, req.offset, len));
        done(req, r);
    }
}

fn execute(s: &Shared, req: &mut BlockRequest) -> io::Result<u64> {
    let mut data = s.data.lock().unwrap_or_else(|e| e.into_inner());
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

impl BlockIo for RamDisk {
    fn info(&self) -> BlockInfo {
        self.info
    }

    fn submit(&self, req: BlockRequest, done: BlockDone) {
        self.state().jobs.push_back((req, done));
        self.shared.cv.notify_all();
    }
}

impl Drop for RamDisk {
    fn drop(&mut self) {
        self.state().closing = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
