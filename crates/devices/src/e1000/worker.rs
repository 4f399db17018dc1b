//! The e1000's threads: transmit (woken by TDT writes), receive (woken
//! by the backend and by RDT writes) and the ITR window's end.
//!
//! Each batch is bounded (a quarter of the ring, as bhyve), copies the
//! ring state out under the function's lock, works on guest memory
//! without it, and publishes under it again only if no reset or ring
//! disable happened meanwhile (the generation). What a batch completed
//! before a ring disable is recorded in the generation, and the disable
//! publishes it (the head moves over descriptors whose DD was written).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::regs::{stat, ICR_RXT0, ICR_SRPD};
use super::rx::{self, RxFilter};
use super::stats::Stats;
use super::tx::{Ring, Transmitter, TxContext, TxOutcome, TxParams, CMD_RS, MAX_FRAME, STAT_DD};
use super::{Kicks, Shared, E1000};
use crate::timer::Clock;
use crate::virtio::net::{NetBackend, VNET_HDR_LEN};
use crate::virtio::worker::Workers;

pub(crate) struct WorkerCtx {
    pub dev: Shared,
    pub kicks: Arc<Kicks>,
    pub mem: GuestMemoryMmap,
    pub backend: Option<Arc<dyn NetBackend>>,
    pub tx_gen: Arc<Generation<TxResult>>,
    pub rx_gen: Arc<Generation<RxProgress>>,
    pub clock: Arc<dyn Clock>,
}

/// A ring's generation, bumped by a reset, a ring disable or a head
/// write. A worker writes guest memory only while holding the generation
/// its batch began with, so a bump waits for at most one frame's copy and
/// nothing lands after it returned: a driver frees its rings as soon as
/// it disabled them. Lock order: the function, then this; a worker never
/// takes the function while holding it.
///
/// With each write the worker records its batch's progress `P` (heads,
/// statistics, causes) here, so that the bump can hand over what was
/// completed: a disabled ring keeps it, a reset or head write drops it.
pub(crate) struct Generation<P>(Mutex<GenState<P>>);

struct GenState<P> {
    value: u64,
    /// What a worker completed in this generation and has not published.
    progress: Option<P>,
}

impl<P> Default for Generation<P> {
    fn default() -> Self {
        Generation(Mutex::new(GenState {
            value: 0,
            progress: None,
        }))
    }
}

/// A generation held across a write to guest memory.
pub(crate) struct Held<'a, P>(MutexGuard<'a, GenState<P>>);

impl<P> Held<'_, P> {
    /// What the batch completed so far, this write included.
    pub fn record(&mut self, progress: P) {
        self.0.progress = Some(progress);
    }
}

impl<P> Generation<P> {
    fn state(&self) -> MutexGuard<'_, GenState<P>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> u64 {
        self.state().value
    }

    /// Ends the generation; returns what a worker completed in it and
    /// had not published yet.
    pub fn bump(&self) -> Option<P> {
        let mut g = self.state();
        g.value = g.value.wrapping_add(1);
        g.progress.take()
    }

    /// The generation, held, if it is still `gen`.
    pub fn hold(&self, gen: u64) -> Option<Held<'_, P>> {
        let g = self.state();
        (g.value == gen).then_some(Held(g))
    }

    /// A batch of `gen` publishes: false if the generation ended since
    /// (its bump took the progress).
    pub fn finish(&self, gen: u64) -> bool {
        let mut g = self.state();
        g.progress = None;
        g.value == gen
    }
}

pub(crate) struct TxJob {
    pub gen: u64,
    pub ring: Ring,
    pub head: u32,
    pub tail: u32,
    pub ctx: TxContext,
    pub params: TxParams,
}

#[derive(Clone)]
pub(crate) struct TxResult {
    pub head: u32,
    pub read_head: u32,
    pub ctx: TxContext,
    pub wrote_back: bool,
    pub consumed: bool,
    pub stats: Stats,
}

pub(crate) struct RxBatch {
    pub gen: u64,
    pub ring: Ring,
    pub head: u32,
    pub tail: u32,
    pub rsrpd: usize,
    pub filter: RxFilter,
}

/// What a receive batch delivered so far.
#[derive(Clone)]
pub(crate) struct RxProgress {
    pub ring: Ring,
    pub head: u32,
    pub cause: u32,
    pub stats: Stats,
}

pub(crate) enum RxJob {
    Disabled,
    NoRoom,
    Ready(Box<RxBatch>),
}

fn lock(d: &Mutex<E1000>) -> MutexGuard<'_, E1000> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// ppoll(2) over `(fd, events)`; all zero on timeout or EINTR.
fn poll(fds: &[(RawFd, i16)], timeout: Option<Duration>) -> Vec<i16> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
    // SAFETY: `p` holds `p.len()` pollfds and `tsp` is null or points to
    // a live timespec for the duration of the call.
    let n = unsafe {
        libc::ppoll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            tsp,
            std::ptr::null(),
        )
    };
    if n <= 0 {
        return vec![0; fds.len()];
    }
    p.iter().map(|p| p.revents).collect()
}

/// Tests park a worker here to race it with a vCPU.
#[cfg(test)]
fn dma_hook(k: &Kicks) {
    let hook = k.dma_hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(h) = hook {
        h();
    }
}

#[cfg(not(test))]
fn dma_hook(_: &Kicks) {}

fn drain(e: &EventFd) {
    let _ = e.read();
}

pub(crate) fn start(workers: &mut Workers, ctx: WorkerCtx) -> Result<(), String> {
    let stop = workers.begin()?;
    let ctx = Arc::new(ctx);
    let (c, s) = (ctx.clone(), stop.clone());
    workers.spawn("e1000-tx", move || tx_worker(&c, &s))?;
    let (c, s) = (ctx.clone(), stop.clone());
    workers.spawn("e1000-itr", move || itr_worker(&c, &s))?;
    if ctx.backend.is_some() {
        workers.spawn("e1000-rx", move || rx_worker(&ctx, &stop))?;
    }
    Ok(())
}

// ---- transmit -----------------------------------------------------------

fn tx_worker(ctx: &WorkerCtx, stop: &EventFd) {
    let mut t = Transmitter::new();
    let mut out = vec![0u8; VNET_HDR_LEN + MAX_FRAME];
    loop {
        loop {
            let Some(dev) = ctx.dev.upgrade() else { return };
            let job = lock(&dev).tx_job();
            drop(dev);
            let Some(job) = job else { break };
            let res = tx_batch(ctx, &mut t, &mut out, stop, &job);
            let Some(dev) = ctx.dev.upgrade() else { return };
            lock(&dev).tx_done(&job, &res);
        }
        let r = poll(
            &[
                (ctx.kicks.tx.as_raw_fd(), libc::POLLIN),
                (stop.as_raw_fd(), libc::POLLIN),
            ],
            None,
        );
        if r[1] != 0 {
            return;
        }
        drain(&ctx.kicks.tx);
    }
}

/// Up to a quarter of the ring's descriptors (at least one packet).
fn tx_batch(
    ctx: &WorkerCtx,
    t: &mut Transmitter,
    out: &mut [u8],
    stop: &EventFd,
    job: &TxJob,
) -> TxResult {
    let ring = job.ring;
    let mut res = TxResult {
        head: job.head,
        read_head: job.head,
        ctx: job.ctx,
        wrote_back: false,
        consumed: false,
        stats: Stats::default(),
    };
    let mut budget = (ring.len / 4).max(1);
    while budget > 0 && res.head != job.tail {
        let mut sent = Stats::default();
        let mut send = |f: &[u8]| {
            // Reset or disabled since: the rest of a TSO packet's
            // segments (up to 256 KiB of MSS 1) go nowhere.
            if ctx.tx_gen.get() != job.gen {
                return;
            }
            sent.count_tx(f);
            send_frame(ctx.backend.as_deref(), f, out, stop);
        };
        let outcome = t.transmit(
            &ctx.mem,
            ring,
            (res.head, job.tail),
            &mut res.ctx,
            job.params,
            &mut send,
        );
        match outcome {
            TxOutcome::Incomplete => {
                res.read_head = job.tail;
                break;
            }
            TxOutcome::Done { next, tso } => {
                let Some(mut held) = ctx.tx_gen.hold(job.gen) else {
                    // Sent, not completed: a re-enable sends it again.
                    break;
                };
                dma_hook(&ctx.kicks);
                res.wrote_back |= write_back(&ctx.mem, ring, res.head, next);
                res.stats.merge(&sent);
                if tso {
                    res.stats.add(stat::TSCTC, 1);
                }
                budget = budget.saturating_sub(ring.distance(res.head, next).max(1));
                res.head = next;
                res.read_head = next;
                res.consumed = true;
                held.record(res.clone());
            }
        }
    }
    res
}

/// Sets DD in every descriptor of `[from, to)` that asked for status
/// (RS); true when one did.
fn write_back(mem: &GuestMemoryMmap, ring: Ring, from: u32, to: u32) -> bool {
    let mut any = false;
    let mut i = from;
    loop {
        if let Some(d) = ring.read(mem, i) {
            let lower = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
            if lower & CMD_RS != 0 {
                if let Some(a) = ring.desc_addr(i).and_then(|a| a.0.checked_add(12)) {
                    let _ = mem.write_obj(d[12] | STAT_DD, GuestAddress(a));
                    any = true;
                }
            }
        }
        i = ring.next(i);
        if i == to || i == from {
            return any;
        }
    }
}

/// Sends one frame, with a zeroed virtio-net header when the backend
/// wants one. A backend that pushes back gets one short wait (a vCPU
/// never waits for this), then the frame is dropped as bhyve does.
fn send_frame(backend: Option<&dyn NetBackend>, frame: &[u8], out: &mut [u8], stop: &EventFd) {
    let Some(b) = backend else { return };
    let data: &[u8] = if b.has_vnet_hdr() {
        let n = VNET_HDR_LEN + frame.len();
        let Some(buf) = out.get_mut(..n) else { return };
        buf[..VNET_HDR_LEN].fill(0);
        buf[VNET_HDR_LEN..].copy_from_slice(frame);
        buf
    } else {
        frame
    };
    for attempt in 0..2 {
        match b.send(data) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && attempt == 0 => {
                poll(
                    &[
                        (b.poll_fd(), libc::POLLOUT),
                        (stop.as_raw_fd(), libc::POLLIN),
                    ],
                    Some(Duration::from_millis(100)),
                );
            }
            Err(e) => {
                log::debug!("e1000: frame not sent: {e}");
                return;
            }
            Ok(_) => return,
        }
    }
}

// ---- receive ------------------------------------------------------------

/// Frames discarded per wakeup while receiving is off.
const DISCARD_BATCH: usize = 1024;
/// How long a backend that failed (not merely empty) is left alone: its
/// descriptor may poll ready forever (a tap whose interface was deleted).
const FAILED_BACKEND_PAUSE: Duration = Duration::from_millis(100);

/// What one receive batch met.
enum Received {
    /// Frames arrived; there may be more.
    Frames,
    /// The backend had none.
    Empty,
    /// The backend failed.
    Failed,
}

fn failed(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::WouldBlock {
        return false;
    }
    log::debug!("e1000: receive: {e}");
    true
}

fn rx_worker(ctx: &WorkerCtx, stop: &EventFd) {
    let Some(backend) = ctx.backend.clone() else {
        return;
    };
    let hdr = if backend.has_vnet_hdr() {
        VNET_HDR_LEN
    } else {
        0
    };
    let mut buf = vec![0u8; hdr + 65536 + 64];
    let kick = ctx.kicks.rx.as_raw_fd();
    let (bfd, sfd) = (backend.poll_fd(), stop.as_raw_fd());
    loop {
        let Some(dev) = ctx.dev.upgrade() else { return };
        let job = lock(&dev).rx_job();
        drop(dev);
        let mut backend_failed = false;
        let watch_backend = match job {
            RxJob::Disabled => {
                // bhyve discards what arrives while receiving is off.
                for _ in 0..DISCARD_BATCH {
                    if let Err(e) = backend.recv(&mut buf) {
                        backend_failed = failed(&e);
                        break;
                    }
                }
                !backend_failed
            }
            // Frames wait in the backend until the guest gives buffers.
            RxJob::NoRoom => false,
            RxJob::Ready(batch) => match rx_batch(ctx, &*backend, hdr, &mut buf, &batch) {
                Received::Frames => continue,
                Received::Empty => true,
                Received::Failed => {
                    backend_failed = true;
                    false
                }
            },
        };
        let mut fds = vec![(kick, libc::POLLIN), (sfd, libc::POLLIN)];
        if watch_backend {
            fds.push((bfd, libc::POLLIN));
        }
        let r = poll(&fds, backend_failed.then_some(FAILED_BACKEND_PAUSE));
        if r[1] != 0 {
            return;
        }
        drain(&ctx.kicks.rx);
    }
}

/// Receives up to a quarter of the ring's worth of frames.
fn rx_batch(
    ctx: &WorkerCtx,
    backend: &dyn NetBackend,
    hdr: usize,
    buf: &mut [u8],
    b: &RxBatch,
) -> Received {
    let rctl = b.filter.rctl;
    let per_packet = rx::descs_per_packet(rctl);
    let max = rx::max_packet(rctl);
    let mut left = b.ring.distance(b.head, b.tail);
    let mut p = RxProgress {
        ring: b.ring,
        head: b.head,
        cause: 0,
        stats: Stats::default(),
    };
    let mut budget = (b.ring.len / 4).max(1);
    let mut got = Received::Empty;
    while budget > 0 && left >= per_packet {
        let n = match backend.recv(buf) {
            Ok(n) => n,
            Err(e) => {
                if failed(&e) && matches!(got, Received::Empty) {
                    got = Received::Failed;
                }
                break;
            }
        };
        got = Received::Frames;
        budget -= 1;
        let Some(frame) = buf.get(hdr..n) else {
            continue;
        };
        if frame.len() + 4 > max {
            p.stats.add(stat::ROC, 1);
            continue;
        }
        if !b.filter.accepts(frame) {
            continue;
        }
        let Some(mut held) = ctx.rx_gen.hold(b.gen) else {
            break;
        };
        dma_hook(&ctx.kicks);
        let (next, len) = rx::deliver(&ctx.mem, b.ring, p.head, rctl, frame);
        left -= b.ring.distance(p.head, next);
        p.head = next;
        p.stats.count_rx(frame, len);
        p.cause |= ICR_RXT0;
        if len <= b.rsrpd {
            p.cause |= ICR_SRPD;
        }
        held.record(p.clone());
    }
    let Some(dev) = ctx.dev.upgrade() else {
        return Received::Empty;
    };
    lock(&dev).rx_done(b.gen, b.head, &p);
    got
}

// ---- interrupt moderation -------------------------------------------------

fn itr_worker(ctx: &WorkerCtx, stop: &EventFd) {
    loop {
        let Some(dev) = ctx.dev.upgrade() else { return };
        let deadline = lock(&dev).itr_expire();
        drop(dev);
        let timeout =
            deadline.map(|t| Duration::from_nanos(t.saturating_sub(ctx.clock.now_ns()).max(1)));
        let r = poll(
            &[
                (ctx.kicks.itr.as_raw_fd(), libc::POLLIN),
                (stop.as_raw_fd(), libc::POLLIN),
            ],
            timeout,
        );
        if r[1] != 0 {
            return;
        }
        drain(&ctx.kicks.itr);
    }
}
