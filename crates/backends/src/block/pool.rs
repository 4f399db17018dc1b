//! bhyve's blockif threads: a fixed pool taking requests from one queue,
//! so a slow request (a flush, a cold read) does not hold up the others
//! and a guest can keep many in flight.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use bhyve_devices::blockif::{BlockDone, BlockRequest};

use super::io::Disk;

/// bhyve's BLOCKIF_NUMTHR.
pub(super) const THREADS: usize = 8;

type Job = (BlockRequest, BlockDone);

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

pub(super) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn run(disk: Arc<Disk>, shared: Arc<Shared>) {
    loop {
        let (mut req, done) = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = st.jobs.pop_front() {
                    break j;
                }
                if st.closing {
                    return;
                }
                st = shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let r = disk.execute(&mut req);
        done(req, r);
    }
}

impl Pool {
    pub(super) fn start(disk: Arc<Disk>, name: &str) -> io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let mut pool = Pool {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for i in 0..THREADS {
            let (d, s) = (disk.clone(), shared.clone());
            // On failure `pool` drops here and stops the started ones.
            pool.threads.push(
                std::thread::Builder::new()
                    .name(format!("blk-{name}-{i}"))
                    .spawn(move || run(d, s))?,
            );
        }
        Ok(pool)
    }

    pub(super) fn submit(&self, req: BlockRequest, done: BlockDone) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closing {
            drop(st);
            done(req, Err(io::Error::from_raw_os_error(libc::ECANCELED)));
            return;
        }
        st.jobs.push_back((req, done));
        drop(st);
        self.shared.cv.notify_one();
    }
}

impl Drop for Pool {
    /// Finishes the queued requests (their callbacks own guest-visible
    /// state), then stops the threads. A callback may drop the last
    /// reference to the backend from a pool thread: never join that one.
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.cv.notify_all();
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}
