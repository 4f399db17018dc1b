//! virtio-blk (bhyve's `pci_virtio_block.c`) over a [`BlockIo`] backend.
//!
//! One queue. A worker thread pops descriptor chains, checks them, and
//! hands reads, writes, flushes, discards and write-zeroes to the
//! backend's threads; the backend's completion writes the status byte
//! and puts the chain in the used ring (re-taking the queue lock, which
//! fails once the device was reset: the result is then dropped). GET_ID
//! and every refused request complete on the worker.
//!
//! A reset waits (bounded) until the backend has finished the device's
//! requests ([`InFlight`]): no read data lands in guest memory and no
//! write reaches the disk after it.
//!
//! Every length and address comes from the guest: sums saturate, chains
//! are bounded, guest memory is only touched through vm-memory (errors
//! become IOERR) or through the backend's checked translation.
//!
//! Resize: after each FLUSH the backend's size is re-read; a grown or
//! shrunk disk updates `capacity` and raises a configuration-change
//! interrupt (bhyve does it on a kqueue event; a guest flushes often).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::inflight::{InFlight, RESET_DRAIN_BOUND};
use super::{types, wait_readable, Activation, ActiveQueues, VirtioDevice};
use crate::blockif::{BlockBuffers, BlockInfo, BlockIo, BlockOp, BlockRequest};
use crate::virtio::chain_io::{gather, slice_segs, total};
use crate::virtio::worker::Workers;

/// Ring size (bhyve uses 64; 128 lets a guest keep more in flight).
const QUEUE_SIZE: u16 = 128;
/// Data segments per request, leaving room for header and status
/// (bhyve clamps seg_max below the ring size for Linux's sake).
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Segments we accept in one chain, header and status included.
const MAX_SEGS: usize = SEG_MAX as usize + 2;
/// bhyve's limits: one range per discard/write-zeroes, 16 MiB each.
const MAX_DISCARD_SECTORS: u32 = (16 << 20) / 512;
const MAX_DISCARD_SEG: u32 = 1;
/// Used lengths are u32: a read larger than that is refused.
const MAX_IO: u64 = u32::MAX as u64 - 1;

/// Length of GET_ID's answer (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;

/// PCI class: mass storage, SCSI (bhyve's PCIC_STORAGE, subclass 0).
const CLASS_STORAGE: (u8, u8, u8) = (0x01, 0x00, 0x00);

pub mod features {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const TOPOLOGY: u64 = 1 << 10;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types and status values (virtio 1.2 §5.2.6).
pub mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    /// bhyve also accepts this legacy spelling of FLUSH.
    pub const FLUSH_OUT: u32 = 5;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
    pub const S_OK: u8 = 0;
    pub const S_IOERR: u8 = 1;
    pub const S_UNSUPP: u8 = 2;
    pub const WRITE_ZEROES_UNMAP: u32 = 1;
}

/// Size of the configuration space we expose (through
/// write_zeroes_may_unmap and its padding).
const CONFIG_SIZE: usize = 60;

pub struct VirtioBlk {
    backend: Arc<dyn BlockIo>,
    info: BlockInfo,
    ident: [u8; ID_BYTES],
    /// In 512-byte sectors; changes on resize.
    capacity: Arc<AtomicU64>,
    workers: Workers,
    /// Chains popped and not yet completed, over every activation: a
    /// reset does not cancel what the backend holds, so a fresh count
    /// per activation would let a guest that resets in a loop queue
    /// unbounded work. A reset waits for it to drop to zero.
    inflight: Arc<InFlight>,
    /// How long a reset waits for the backend ([`RESET_DRAIN_BOUND`];
    /// tests shorten it).
    drain_bound: Duration,
    /// Written by a completion when the worker may pop again, whichever
    /// activation's worker is current (made at the first activation).
    more: Option<Arc<EventFd>>,
}

impl VirtioBlk {
    /// `serial` is GET_ID's answer (`ser=`, or bhyve's default from the
    /// path), cut to 20 bytes.
    pub fn new(backend: Arc<dyn BlockIo>, serial: &str) -> Self {
        let info = backend.info();
        let mut ident = [0u8; ID_BYTES];
        let s = serial.as_bytes();
        let n = s.len().min(ID_BYTES);
        ident[..n].copy_from_slice(&s[..n]);
        VirtioBlk {
            backend,
            info,
            ident,
            capacity: Arc::new(AtomicU64::new(info.size / 512)),
            workers: Workers::new(),
            inflight: Arc::default(),
            drain_bound: RESET_DRAIN_BOUND,
            more: None,
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        let i = &self.info;
        let ss = i.sector_size.max(512);
        let put32 = |c: &mut [u8; CONFIG_SIZE], at: usize, v: u32| {
            c[at..at + 4].copy_from_slice(&v.to_le_bytes())
        };
        c[0..8].copy_from_slice(&self.capacity.load(Ordering::Relaxed).to_le_bytes());
        put32(&mut c, 12, SEG_MAX);
        put32(&mut c, 20, ss);
        // Topology: physical sectors per logical one as a power of two,
        // and the first aligned logical sector.
        let ps = i.physical_sector_size;
        c[24] = if ps > ss {
            (ps / ss).trailing_zeros() as u8
        } else {
            0
        };
        c[25] = if i.physical_sector_offset != 0 && ps > i.physical_sector_offset {
            ((ps - i.physical_sector_offset) / ss) as u8
        } else {
            0
        };
        c[34..36].copy_from_slice(&1u16.to_le_bytes()); // num_queues
        put32(&mut c, 36, MAX_DISCARD_SECTORS);
        put32(&mut c, 40, MAX_DISCARD_SEG);
        put32(&mut c, 44, ss.max(ps) / 512);
        if !i.read_only {
            put32(&mut c, 48, MAX_DISCARD_SECTORS);
            put32(&mut c, 52, MAX_DISCARD_SEG);
            // We may punch holes for UNMAP write-zeroes.
            c[56] = u8::from(i.can_delete);
        }
        c
    }
}

/// One activation's shared state, reached from the worker and from
/// completions on backend threads.
struct Ctx {
    aq: Arc<ActiveQueues>,
    mem: GuestMemoryMmap,
    backend: Arc<dyn BlockIo>,
    features: u64,
    ident: [u8; ID_BYTES],
    capacity: Arc<AtomicU64>,
    /// Chains popped and not yet in the used ring, the device's count
    /// ([`VirtioBlk::inflight`]): bounded so a guest re-posting heads
    /// cannot queue unbounded work.
    inflight: Arc<InFlight>,
    /// Written by a completion when the worker may pop again.
    more: Arc<EventFd>,
    /// Which requests the worker runs itself.
    lone: LoneStreak,
}

/// What a checked chain asks for.
enum Parsed {
    /// Complete at once with this status (and used length).
    Done {
        status: u8,
        used: u32,
    },
    GetId(Vec<(GuestAddress, u64)>),
    Io(BlockRequest),
}

struct Chain {
    head: u16,
    /// The status byte (last device-writable byte), if the chain has one.
    status_at: Option<GuestAddress>,
    /// Data the device writes before the status byte (reads, GET_ID).
    writes_data: bool,
    what: Parsed,
}

fn parse(ctx: &Ctx, chain: DescriptorChain<&GuestMemoryMmap>) -> Chain {
    let head = chain.head_index();
    let mut readable = Vec::new();
    let mut writable: Vec<(GuestAddress, u64)> = Vec::new();
    let mut ordered = true;
    let mut count = 0;
    for d in chain {
        count += 1;
        if count > MAX_SEGS {
            ordered = false;
            break;
        }
        let seg = (d.addr(), u64::from(d.len()));
        if d.is_write_only() {
            writable.push(seg);
        } else if writable.is_empty() {
            readable.push(seg);
        } else {
            ordered = false;
        }
    }
    // The status byte: the last byte of the last non-empty writable
    // descriptor.
    let status_at = writable
        .iter()
        .rev()
        .find(|s| s.1 > 0)
        .and_then(|s| s.0.checked_add(s.1 - 1));
    let done = |status, used| Chain {
        head,
        status_at,
        writes_data: false,
        what: Parsed::Done { status, used },
    };
    let (rlen, wlen) = (total(&readable), total(&writable));
    let mut hdr = [0u8; 16];
    if !ordered || status_at.is_none() || rlen < 16 || !gather(&ctx.mem, &readable, 0, &mut hdr) {
        return done(req::S_IOERR, u32::from(status_at.is_some()));
    }
    let typ = u32::from_le_bytes(hdr[0..4].try_into().unwrap_or_default());
    let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
    let out_data = slice_segs(&readable, 16, rlen - 16);
    let in_data = slice_segs(&writable, 0, wlen - 1);
    let cap = ctx.capacity.load(Ordering::Relaxed);
    let ro = ctx.features & features::RO != 0;
    let in_range = |sector: u64, sectors: u64| sector <= cap && sectors <= cap - sector;
    let io = |op, offset, len, buffers, writes_data| Chain {
        head,
        status_at,
        writes_data,
        what: Parsed::Io(BlockRequest {
            op,
            offset,
            len,
            buffers,
            fua: ctx.features & features::FLUSH == 0 && op == BlockOp::Write,
        }),
    };
    match typ {
        req::IN | req::OUT => {
            let write = typ == req::OUT;
            let (segs, len) = if write {
                (out_data, rlen - 16)
            } else {
                (in_data, wlen - 1)
            };
            if write && ro {
                return done(req::S_IOERR, 1);
            }
            if len % 512 != 0 || len > MAX_IO || !in_range(sector, len / 512) {
                return done(req::S_IOERR, 1);
            }
            let op = if write { BlockOp::Write } else { BlockOp::Read };
            let bufs = BlockBuffers::Guest {
                mem: ctx.mem.clone(),
                segs,
            };
            io(op, sector * 512, len, bufs, !write)
        }
        req::FLUSH | req::FLUSH_OUT => io(BlockOp::Flush, 0, 0, BlockBuffers::None, false),
        req::GET_ID => Chain {
            head,
            status_at,
            writes_data: true,
            what: Parsed::GetId(in_data),
        },
        req::DISCARD | req::WRITE_ZEROES => {
            let discard = typ == req::DISCARD;
            let f = if discard {
                features::DISCARD
            } else {
                features::WRITE_ZEROES
            };
            if ctx.features & f == 0 {
                return done(req::S_UNSUPP, 1);
            }
            if ro {
                return done(req::S_IOERR, 1);
            }
            let mut seg = [0u8; 16];
            if rlen - 16 != 16 || !gather(&ctx.mem, &readable, 16, &mut seg) {
                return done(req::S_IOERR, 1);
            }
            let start = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
            let n = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
            let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
            let unknown = if discard {
                flags
            } else {
                flags & !req::WRITE_ZEROES_UNMAP
            };
            if unknown != 0 {
                return done(req::S_UNSUPP, 1);
            }
            if n > MAX_DISCARD_SECTORS || !in_range(start, u64::from(n)) {
                return done(req::S_IOERR, 1);
            }
            let op = if discard {
                BlockOp::Discard
            } else {
                BlockOp::WriteZeroes {
                    unmap: flags & req::WRITE_ZEROES_UNMAP != 0,
                }
            };
            io(
                op,
                start * 512,
                u64::from(n) * 512,
                BlockBuffers::None,
                false,
            )
        }
        _ => done(req::S_UNSUPP, 1),
    }
}

/// A chain's answer: its status byte (if it has one) and used length.
#[derive(Clone, Copy)]
struct Answer {
    head: u16,
    status_at: Option<GuestAddress>,
    status: u8,
    used: u32,
}

/// Writes the answers' status bytes, returns their chains to the driver
/// and signals it once.
fn complete(ctx: &Ctx, answers: impl IntoIterator<Item = Answer> + Clone) {
    let notify = match ctx.aq.lock(0) {
        // Under the queue lock, which a reset waits for: no status byte
        // lands in guest memory after the reset.
        Some(mut q) => {
            let mut used = false;
            for a in answers.clone() {
                if let Some(at) = a.status_at {
                    let _ = ctx.mem.write_obj(a.status, at);
                }
                used |= q.add_used(&ctx.mem, a.head, a.used).is_ok();
            }
            used && q.needs_notification(&ctx.mem).unwrap_or(true)
        }
        None => false,
    };
    // Only now, with nothing left to write, do the chains stop counting
    // (a reset waits for the count); and before signalling, which may
    // wait for the PCI function a resetting vCPU holds.
    for _ in answers {
        if ctx.inflight.done() == usize::from(QUEUE_SIZE) {
            let _ = ctx.more.write(1);
        }
    }
    if notify {
        ctx.aq.signal_used(0);
    }
}

fn dispatch(ctx: &Arc<Ctx>, c: Chain) {
    let Chain {
        head,
        status_at,
        writes_data,
        what,
    } = c;
    match what {
        Parsed::Done { status, used } => complete(
            ctx,
            [Answer {
                head,
                status_at,
                status,
                used,
            }],
        ),
        Parsed::GetId(segs) => {
            let mut id = &ctx.ident[..];
            let mut written = 0u32;
            let mut ok = true;
            for (a, l) in segs {
                let n = (l as usize).min(id.len());
                if n == 0 {
                    break;
                }
                ok &= ctx.mem.write_slice(&id[..n], a).is_ok();
                id = &id[n..];
                written += n as u32;
            }
            let status = if ok { req::S_OK } else { req::S_IOERR };
            let used = 1 + written;
            complete(
                ctx,
                [Answer {
                    head,
                    status_at,
                    status,
                    used,
                }],
            );
        }
        Parsed::Io(r) => {
            let len = r.buffers.len();
            submit(
                ctx,
                r,
                vec![Member {
                    head,
                    status_at,
                    writes_data,
                    len,
                }],
            );
        }
    }
}

/// A chain whose request went to the backend, alone or merged with its
/// neighbours.
struct Member {
    head: u16,
    status_at: Option<GuestAddress>,
    writes_data: bool,
    /// Its share of the merged request's data.
    len: u64,
}

/// Hands `r` to the backend; its completion completes every member.
fn submit(ctx: &Arc<Ctx>, r: BlockRequest, members: Vec<Member>) {
    if ctx.aq.is_stopped() {
        // Reset since the chains were popped: the driver no longer
        // waits for them, and the reset waits for whatever we start.
        complete(ctx, answers(&members, req::S_IOERR));
        return;
    }
    let flush = r.op == BlockOp::Flush;
    let here = ctx.lone.run_here(ctx.inflight.get(), members.len(), &r);
    let c2 = ctx.clone();
    let done: crate::blockif::BlockDone = Box::new(move |_req, res| {
        let status = match res {
            Ok(_) => req::S_OK,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => req::S_UNSUPP,
            Err(e) => {
                log::debug!("virtio-blk: request failed: {e}");
                req::S_IOERR
            }
        };
        complete(&c2, answers(&members, status));
        // After `complete`: a configuration interrupt may wait for
        // the PCI function, which a reset holds while it waits for
        // these members.
        if flush {
            check_resize(&c2);
        }
    });
    if here {
        ctx.backend.submit_here(r, done);
    } else {
        ctx.backend.submit(r, done);
    }
}

/// Lone requests in a row before the worker runs them itself.
const LONE_STREAK: u32 = 4;

/// Decides which requests the worker executes itself instead of handing
/// them to a backend thread: at queue depth 1 the hand-off (waking a
/// backend thread, which then completes) is a large part of each
/// request's latency. Only reads and plain writes (a flush may take
/// long), only when the request is everything the device has in flight,
/// and only after a streak of such requests: while the worker executes,
/// the guest's next request waits, which a guest at depth 1 never
/// notices but one that keeps several in flight would; any request
/// submitted beside others ends the streak. Only the worker uses it.
#[derive(Default)]
struct LoneStreak(AtomicU32);

impl LoneStreak {
    /// `inflight`: chains the device has in flight, `members` of them
    /// this request's.
    fn run_here(&self, inflight: usize, members: usize, r: &BlockRequest) -> bool {
        if inflight != members {
            self.0.store(0, Ordering::Relaxed);
            return false;
        }
        let streak = self.0.load(Ordering::Relaxed).saturating_add(1);
        self.0.store(streak, Ordering::Relaxed);
        streak > LONE_STREAK && matches!(r.op, BlockOp::Read | BlockOp::Write) && !r.fua
    }
}

/// Every member's answer for `status`.
fn answers(members: &[Member], status: u8) -> impl Iterator<Item = Answer> + Clone + '_ {
    members.iter().map(move |m| {
        let data = if m.writes_data && status == req::S_OK {
            m.len.min(MAX_IO) as u32
        } else {
            0
        };
        Answer {
            head: m.head,
            status_at: m.status_at,
            status,
            used: data + 1,
        }
    })
}

/// Largest merged request, and its segment count (preadv's IOV_MAX is
/// 1024).
const MAX_MERGE_BYTES: u64 = 4 << 20;
const MAX_MERGE_SEGS: usize = 512;

/// Whether `b` continues `a` on the disk in the same direction, so one
/// host I/O can serve both (QEMU merges the same way; fewer, larger host
/// requests is what sequential I/O needs).
fn continues(a: &BlockRequest, b: &BlockRequest) -> bool {
    let (BlockBuffers::Guest { segs: sa, .. }, BlockBuffers::Guest { segs: sb, .. }) =
        (&a.buffers, &b.buffers)
    else {
        return false;
    };
    let (la, lb) = (a.buffers.len(), b.buffers.len());
    matches!(a.op, BlockOp::Read | BlockOp::Write)
        && a.op == b.op
        && a.fua == b.fua
        && a.offset.checked_add(la) == Some(b.offset)
        && la.saturating_add(lb) <= MAX_MERGE_BYTES
        && sa.len() + sb.len() <= MAX_MERGE_SEGS
}

/// Dispatches a batch of chains in order, merging runs of contiguous
/// reads or writes into single backend requests.
fn dispatch_batch(ctx: &Arc<Ctx>, batch: Vec<Chain>) {
    let mut run: Option<(BlockRequest, Vec<Member>)> = None;
    for c in batch {
        if let Parsed::Io(r) = &c.what {
            if let Some((cur, members)) = &mut run {
                if continues(cur, r) {
                    let Chain {
                        head,
                        status_at,
                        writes_data,
                        what: Parsed::Io(r),
                    } = c
                    else {
                        unreachable!("matched above")
                    };
                    let len = r.buffers.len();
                    if let (
                        BlockBuffers::Guest { segs, .. },
                        BlockBuffers::Guest { segs: more, .. },
                    ) = (&mut cur.buffers, r.buffers)
                    {
                        segs.extend(more);
                    }
                    cur.len = cur.len.saturating_add(r.len);
                    members.push(Member {
                        head,
                        status_at,
                        writes_data,
                        len,
                    });
                    continue;
                }
            }
        }
        if let Some((r, members)) = run.take() {
            submit(ctx, r, members);
        }
        match c {
            Chain {
                head,
                status_at,
                writes_data,
                what: Parsed::Io(r),
            } if matches!(r.op, BlockOp::Read | BlockOp::Write) => {
                let len = r.buffers.len();
                run = Some((
                    r,
                    vec![Member {
                        head,
                        status_at,
                        writes_data,
                        len,
                    }],
                ));
            }
            c => dispatch(ctx, c),
        }
    }
    if let Some((r, members)) = run {
        submit(ctx, r, members);
    }
}

fn check_resize(ctx: &Ctx) {
    let Some(size) = ctx.backend.refresh_size() else {
        return;
    };
    let sectors = size / 512;
    if ctx.capacity.swap(sectors, Ordering::Relaxed) != sectors {
        log::info!("virtio-blk: disk resized to {size} bytes");
        ctx.aq.signal_config();
    }
}

/// Pops what the driver made available (up to the in-flight bound) and
/// dispatches it; false once the device was reset.
fn pump(ctx: &Arc<Ctx>) -> bool {
    let batch = {
        let Some(mut q) = ctx.aq.lock(0) else {
            return false;
        };
        super::pop_bounded(&mut q, &ctx.mem, &ctx.inflight, QUEUE_SIZE.into(), |c| {
            parse(ctx, c)
        })
    };
    dispatch_batch(ctx, batch);
    true
}

fn worker(ctx: Arc<Ctx>, stop: Arc<EventFd>) {
    let Some(kick) = ctx.aq.kick(0) else { return };
    loop {
        if !pump(&ctx) {
            return;
        }
        let ready = wait_readable(&[kick, &stop, &*ctx.more]);
        if ready.contains(&1) || ctx.aq.is_stopped() {
            return;
        }
        let _ = kick.read();
        let _ = ctx.more.read();
    }
}

impl VirtioDevice for VirtioBlk {
    fn device_type(&self) -> u16 {
        types::BLOCK
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_STORAGE
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = features::SEG_MAX | features::BLK_SIZE | features::FLUSH | features::TOPOLOGY;
        if self.info.read_only {
            f |= features::RO;
        } else {
            f |= features::WRITE_ZEROES;
            if self.info.can_delete {
                f |= features::DISCARD;
            }
        }
        f
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| c.get(usize::try_from(o).ok()?))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let more = match &self.more {
            Some(m) => m.clone(),
            None => {
                let m = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
                self.more = Some(m.clone());
                m
            }
        };
        let ctx = Arc::new(Ctx {
            aq: act.queues,
            mem: act.mem,
            backend: self.backend.clone(),
            // RO is ours to enforce whatever the driver accepted.
            features: act.features | (self.features() & features::RO),
            ident: self.ident,
            capacity: self.capacity.clone(),
            inflight: self.inflight.clone(),
            more,
            lone: LoneStreak::default(),
        });
        let s = stop.clone();
        self.workers.spawn("virtio-blk", move || worker(ctx, s))?;
        Ok(())
    }

    fn reset(&mut self) {
        self.workers.stop();
        // The queues are stopped and their locks free: completions can
        // finish (see `inflight` for the lock order).
        self.inflight.drain("virtio-blk", self.drain_bound);
    }
}

#[cfg(test)]
#[path = "blk_tests.rs"]
mod tests;

#[cfg(test)]
mod lone_tests {
    use super::*;

    fn rq(op: BlockOp, fua: bool) -> BlockRequest {
        BlockRequest {
            op,
            offset: 0,
            len: 0,
            buffers: BlockBuffers::None,
            fua,
        }
    }

    #[test]
    fn only_a_streak_of_lone_reads_and_writes_runs_on_the_worker() {
        let l = LoneStreak::default();
        let read = rq(BlockOp::Read, false);
        for _ in 0..LONE_STREAK {
            assert!(!l.run_here(1, 1, &read));
        }
        assert!(l.run_here(1, 1, &read));
        assert!(l.run_here(1, 1, &rq(BlockOp::Write, false)));
        // A merged request that is all in flight counts as lone.
        assert!(l.run_here(3, 3, &read));
        // Never a flush or a write-through write, streak or not.
        assert!(!l.run_here(1, 1, &rq(BlockOp::Flush, false)));
        assert!(!l.run_here(1, 1, &rq(BlockOp::Write, true)));
        // A request beside others ends the streak.
        assert!(!l.run_here(2, 1, &read));
        for _ in 0..LONE_STREAK {
            assert!(!l.run_here(1, 1, &read));
        }
        assert!(l.run_here(1, 1, &read));
    }
}
