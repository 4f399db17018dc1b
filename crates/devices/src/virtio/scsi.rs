//! virtio-scsi (bhyve's `pci_virtio_scsi.c`) with its own SCSI target.
//!
//! bhyve hands every CDB to the kernel's CAM Target Layer; Linux has
//! none, so the logical units here are [`BlockIo`] backends (disk
//! images, block devices) and [`target`] implements the direct-access
//! command set. One target (0), LUNs as configured.
//!
//! Queues: 0 control (task management answered once every earlier
//! request completed; asynchronous notification: none), 1 event (its
//! buffers are kept: we raise no events), 2 requests. A worker thread
//! pops requests, decodes them and hands I/O to the backend's threads,
//! whose completion writes the response and returns the chain (as
//! virtio-blk does). Emulated commands complete on the worker.
//!
//! Every length comes from the guest: segment sums saturate, chains are
//! bounded, headers are gathered through vm-memory (errors are answered,
//! never unwrapped), and data lengths are checked against the CDB.

mod control;
mod pages;
pub mod target;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::inflight::{InFlight, RESET_DRAIN_BOUND};
use super::{types, wait_readable, Activation, ActiveQueues, VirtioDevice};
use crate::blockif::{BlockBuffers, BlockIo, BlockOp, BlockRequest};
use target::{status, Action, LunInfo, Sense};

pub(crate) use crate::virtio::chain_io::{gather, slice_segs, total, Segs};
use crate::virtio::worker::Workers;
pub use pages::{PRODUCT, VENDOR};

/// Ring size of every queue (bhyve: 64).
const QUEUE_SIZE: u16 = 128;
/// Queue 1 (events) is never popped: its buffers stay with us.
const CONTROLQ: usize = 0;
const REQUESTQ: usize = 2;
/// Data segments per request, leaving room for the two headers.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
const MAX_SEGS: usize = SEG_MAX as usize + 2;
/// Defaults of the driver-writable sizes (virtio 1.2 §5.6.4).
pub const CDB_SIZE: u32 = 32;
pub const SENSE_SIZE: u32 = 96;
/// Upper bounds on what a driver may set them to.
const MAX_CDB_SIZE: u32 = 255;
const MAX_SENSE_SIZE: u32 = 252;
/// bhyve's limits: channel 0, target 0, LUNs 0..=16383.
pub const MAX_LUN: u16 = 16383;
/// Request header before the CDB: lun[8], id, task_attr, prio, crn.
const REQ_HDR: usize = 19;
/// Response header before the sense: sense_len, residual,
/// status_qualifier, status, response.
const RESP_HDR: usize = 12;
/// Largest WRITE SAME block we read to check it is zero.
const MAX_BLOCK: u64 = 64 << 10;

const CONFIG_SIZE: usize = 36;
/// PCI class: mass storage, SCSI (as bhyve).
const CLASS_STORAGE: (u8, u8, u8) = (0x01, 0x00, 0x00);

/// virtio-scsi response codes (virtio 1.2 §5.6.6.1).
pub mod resp {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const BAD_TARGET: u8 = 3;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    pub const FUNCTION_REJECTED: u8 = 11;
}

/// Control queue request types and task management functions.
pub mod ctrl {
    pub const T_TMF: u32 = 0;
    pub const T_AN_QUERY: u32 = 1;
    pub const T_AN_SUBSCRIBE: u32 = 2;
    pub const TMF_QUERY_TASK_SET: u32 = 7;
}

/// A logical unit of target 0 and its backing store.
pub struct ScsiLun {
    pub lun: u16,
    pub backend: Arc<dyn BlockIo>,
    /// VPD unit serial number (`ser=`, or bhyve's default from the path).
    pub serial: String,
}

struct Lun {
    id: u16,
    backend: Arc<dyn BlockIo>,
    info: LunInfo,
}

pub struct VirtioScsi {
    luns: Arc<Vec<Lun>>,
    cdb_size: Arc<AtomicU32>,
    sense_size: Arc<AtomicU32>,
    workers: Workers,
    /// Requests popped and not yet completed, over every activation: a
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

impl VirtioScsi {
    /// `luns` above [`MAX_LUN`] or given twice are dropped (the vmm
    /// refuses them first).
    pub fn new(luns: Vec<ScsiLun>) -> Self {
        let mut v: Vec<Lun> = Vec::new();
        for l in luns {
            if l.lun > MAX_LUN || v.iter().any(|x| x.id == l.lun) {
                continue;
            }
            v.push(Lun {
                id: l.lun,
                info: LunInfo {
                    info: l.backend.info(),
                    serial: l.serial,
                },
                backend: l.backend,
            });
        }
        v.sort_by_key(|l| l.id);
        VirtioScsi {
            luns: Arc::new(v),
            cdb_size: Arc::new(AtomicU32::new(CDB_SIZE)),
            sense_size: Arc::new(AtomicU32::new(SENSE_SIZE)),
            workers: Workers::new(),
            inflight: Arc::default(),
            drain_bound: RESET_DRAIN_BOUND,
            more: None,
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        let fields = [
            1,                     // num_queues
            SEG_MAX,               // seg_max
            0xffff,                // max_sectors
            u32::from(QUEUE_SIZE), // cmd_per_lun
            16,                    // event_info_size
            self.sense_size.load(Ordering::Relaxed),
            self.cdb_size.load(Ordering::Relaxed),
        ];
        for (i, f) in fields.iter().enumerate() {
            c[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
        }
        // max_channel 0, max_target 0, then max_lun.
        c[32..36].copy_from_slice(&u32::from(MAX_LUN).to_le_bytes());
        c
    }
}

/// One activation's state, shared by the worker and completions.
struct Ctx {
    aq: Arc<ActiveQueues>,
    mem: GuestMemoryMmap,
    luns: Arc<Vec<Lun>>,
    lun_ids: Vec<u16>,
    cdb_size: Arc<AtomicU32>,
    sense_size: Arc<AtomicU32>,
    /// Requests popped and not yet used: bounded so a guest re-posting
    /// heads cannot queue unbounded work.
    inflight: Arc<InFlight>,
    /// Written by a completion when the worker may pop again.
    more: Arc<EventFd>,
}

/// Writes the start of `data` into `segs`; returns the bytes written.
fn scatter(mem: &GuestMemoryMmap, segs: &[(GuestAddress, u64)], data: &[u8]) -> usize {
    let mut done = 0;
    for (a, l) in slice_segs(segs, 0, data.len() as u64) {
        let n = l as usize;
        if mem.write_slice(&data[done..done + n], a).is_err() {
            break;
        }
        done += n;
    }
    done
}

/// The readable and writable segments of a chain, in order; None for a
/// chain with a readable part after a writable one or too many parts.
fn split_chain(chain: DescriptorChain<&GuestMemoryMmap>) -> Option<(Segs, Segs)> {
    let (mut r, mut w) = (Vec::new(), Vec::new());
    for (i, d) in chain.enumerate() {
        if i >= MAX_SEGS {
            return None;
        }
        let seg = (d.addr(), u64::from(d.len()));
        if d.is_write_only() {
            w.push(seg);
        } else if w.is_empty() {
            r.push(seg);
        } else {
            return None;
        }
    }
    Some((r, w))
}

/// Where a request's answer goes.
struct Reply {
    head: u16,
    /// The response header's bytes (the first writable ones).
    resp: Segs,
    resp_len: usize,
}

/// The answer to a request.
struct Outcome {
    response: u8,
    status: u8,
    sense: Option<Sense>,
    residual: u64,
    /// Bytes of data-in written.
    data_in: u64,
}

impl Outcome {
    fn response(response: u8) -> Self {
        Outcome {
            response,
            status: status::GOOD,
            sense: None,
            residual: 0,
            data_in: 0,
        }
    }

    fn good(residual: u64, data_in: u64) -> Self {
        Outcome {
            residual,
            data_in,
            ..Outcome::response(resp::OK)
        }
    }

    fn check(sense: Sense, residual: u64) -> Self {
        Outcome {
            status: status::CHECK_CONDITION,
            sense: Some(sense),
            residual,
            ..Outcome::response(resp::OK)
        }
    }
}

/// Writes the response, returns the chain and signals the driver.
fn complete(ctx: &Ctx, r: &Reply, o: Outcome) {
    let notify = ctx.aq.lock(REQUESTQ).is_some_and(|mut q| {
        // Under the queue lock, which a reset waits for: no response
        // lands in guest memory after the reset.
        let mut used = 0u64;
        if r.resp_len >= RESP_HDR {
            let mut h = vec![0u8; r.resp_len];
            let sense = o.sense.map(|s| s.fixed()).unwrap_or_default();
            let sense_len = if o.sense.is_some() {
                sense.len().min(r.resp_len - RESP_HDR)
            } else {
                0
            };
            h[0..4].copy_from_slice(&(sense_len as u32).to_le_bytes());
            let residual = u32::try_from(o.residual).unwrap_or(u32::MAX);
            h[4..8].copy_from_slice(&residual.to_le_bytes());
            h[10] = o.status;
            h[11] = o.response;
            h[RESP_HDR..RESP_HDR + sense_len].copy_from_slice(&sense[..sense_len]);
            used = scatter(&ctx.mem, &r.resp, &h) as u64 + o.data_in;
        }
        let used = u32::try_from(used).unwrap_or(u32::MAX);
        q.add_used(&ctx.mem, r.head, used).is_ok() && q.needs_notification(&ctx.mem).unwrap_or(true)
    });
    // Only now, with nothing left to write, does the request stop
    // counting (a reset and task management wait for the count); and
    // before signalling, which may wait for the PCI function a resetting
    // vCPU holds.
    if ctx.inflight.done() == usize::from(QUEUE_SIZE) {
        let _ = ctx.more.write(1);
    }
    if notify {
        ctx.aq.signal_used(REQUESTQ as u16);
    }
}

/// A request popped from the ring, checked as far as needed to answer.
struct Request {
    reply: Reply,
    /// Header, CDB included; None when the chain was malformed.
    header: Option<Vec<u8>>,
    data_out: Segs,
    data_in: Segs,
}

fn prepare(ctx: &Ctx, chain: DescriptorChain<&GuestMemoryMmap>) -> Request {
    let head = chain.head_index();
    let req_len = REQ_HDR + ctx.cdb_size.load(Ordering::Relaxed).min(MAX_CDB_SIZE) as usize;
    let resp_len = RESP_HDR + ctx.sense_size.load(Ordering::Relaxed).min(MAX_SENSE_SIZE) as usize;
    let Some((readable, writable)) = split_chain(chain) else {
        return Request {
            reply: Reply {
                head,
                resp: Vec::new(),
                resp_len: 0,
            },
            header: None,
            data_out: Vec::new(),
            data_in: Vec::new(),
        };
    };
    let (rlen, wlen) = (total(&readable), total(&writable));
    let resp_len = resp_len.min(usize::try_from(wlen).unwrap_or(usize::MAX));
    let mut header = vec![0u8; req_len];
    let ok = rlen >= req_len as u64 && gather(&ctx.mem, &readable, 0, &mut header);
    Request {
        reply: Reply {
            head,
            resp: slice_segs(&writable, 0, resp_len as u64),
            resp_len,
        },
        header: ok.then_some(header),
        data_out: slice_segs(
            &readable,
            req_len as u64,
            rlen.saturating_sub(req_len as u64),
        ),
        data_in: slice_segs(&writable, resp_len as u64, wlen - resp_len as u64),
    }
}

/// The LUN a request header addresses: Err for a target that does not
/// exist, Ok(None) for an absent LUN of target 0.
fn find_lun<'a>(luns: &'a [Lun], addr: &[u8]) -> Result<Option<&'a Lun>, ()> {
    // Single-level LUN structure: 1, target, then the LUN with
    // peripheral (0b00) or flat (0b01) addressing.
    if addr[0] != 1 || addr[1] != 0 || addr[2] >> 6 > 1 || luns.is_empty() {
        return Err(());
    }
    let id = (u16::from(addr[2]) << 8 | u16::from(addr[3])) & 0x3fff;
    Ok(luns.iter().find(|l| l.id == id))
}

fn execute(ctx: &Arc<Ctx>, req: Request) {
    let Request {
        reply,
        header,
        data_out,
        data_in,
    } = req;
    let Some(header) = header else {
        return complete(ctx, &reply, Outcome::response(resp::FAILURE));
    };
    let (dout, din) = (total(&data_out), total(&data_in));
    let lun = match find_lun(&ctx.luns, &header[0..8]) {
        Ok(l) => l,
        Err(()) => return complete(ctx, &reply, Outcome::response(resp::BAD_TARGET)),
    };
    if dout > 0 && din > 0 {
        // Bidirectional commands need VIRTIO_SCSI_F_INOUT, not offered.
        return complete(ctx, &reply, Outcome::response(resp::FAILURE));
    }
    let action = target::decode(&header[REQ_HDR..], lun.map(|l| &l.info), &ctx.lun_ids);
    let resid = dout + din;
    let Some(lun) = lun else {
        // Only emulated answers exist for an absent LUN.
        return match action {
            Action::Data(v) => data_in_reply(ctx, &reply, &data_in, &v),
            Action::Check(s) => complete(ctx, &reply, Outcome::check(s, resid)),
            _ => complete(ctx, &reply, Outcome::check(Sense::LUN_NOT_SUPPORTED, resid)),
        };
    };
    match action {
        Action::Data(v) => data_in_reply(ctx, &reply, &data_in, &v),
        Action::Good => complete(ctx, &reply, Outcome::good(resid, 0)),
        Action::Check(s) => complete(ctx, &reply, Outcome::check(s, resid)),
        Action::Io {
            op,
            offset,
            len,
            fua,
        } => {
            let buffers = match op {
                BlockOp::Read | BlockOp::Write => {
                    let (segs, have, wrong) = if op == BlockOp::Read {
                        (&data_in, din, dout)
                    } else {
                        (&data_out, dout, din)
                    };
                    if have < len || wrong > 0 {
                        // The buffers cannot hold what the CDB moves.
                        return complete(ctx, &reply, Outcome::response(resp::OVERRUN));
                    }
                    BlockBuffers::Guest {
                        mem: ctx.mem.clone(),
                        segs: slice_segs(segs, 0, len),
                    }
                }
                _ => BlockBuffers::None,
            };
            let req = BlockRequest {
                op,
                offset,
                len,
                buffers,
                fua,
            };
            submit(ctx, lun, reply, vec![req], resid);
        }
        Action::Unmap { param_len } => {
            let n = (param_len as usize)
                .min(target::MAX_UNMAP_PARAM)
                .min(usize::try_from(dout).unwrap_or(usize::MAX));
            let mut param = vec![0u8; n];
            if !gather(&ctx.mem, &data_out, 0, &mut param) {
                return complete(ctx, &reply, Outcome::response(resp::FAILURE));
            }
            match target::unmap_ranges(&lun.info, &param) {
                Err(s) => complete(ctx, &reply, Outcome::check(s, resid)),
                Ok(ranges) if ranges.is_empty() => complete(ctx, &reply, Outcome::good(resid, 0)),
                Ok(ranges) => {
                    let reqs = ranges
                        .into_iter()
                        .map(|(offset, len)| BlockRequest {
                            op: BlockOp::Discard,
                            offset,
                            len,
                            buffers: BlockBuffers::None,
                            fua: false,
                        })
                        .collect();
                    submit(
                        ctx,
                        lun,
                        reply,
                        reqs,
                        resid.saturating_sub(param_len.into()),
                    );
                }
            }
        }
        Action::WriteSame {
            offset,
            len,
            unmap,
            ndob,
        } => {
            let bs = lun.info.block_size();
            let mut resid = resid;
            if !ndob {
                if dout < bs || bs > MAX_BLOCK {
                    return complete(ctx, &reply, Outcome::response(resp::OVERRUN));
                }
                let mut block = vec![0u8; bs as usize];
                if !gather(&ctx.mem, &data_out, 0, &mut block) {
                    return complete(ctx, &reply, Outcome::response(resp::FAILURE));
                }
                // Only zeroes: a pattern would need a host buffer as
                // large as the range (Linux only writes zeroes).
                if block.iter().any(|&b| b != 0) {
                    return complete(
                        ctx,
                        &reply,
                        Outcome::check(Sense::INVALID_FIELD_IN_CDB, resid),
                    );
                }
                resid -= bs;
            }
            let req = BlockRequest {
                op: BlockOp::WriteZeroes { unmap },
                offset,
                len,
                buffers: BlockBuffers::None,
                fua: false,
            };
            submit(ctx, lun, reply, vec![req], resid);
        }
    }
}

/// GOOD with emulated data-in (cut to the buffer).
fn data_in_reply(ctx: &Ctx, reply: &Reply, data_in: &[(GuestAddress, u64)], v: &[u8]) {
    let n = scatter(&ctx.mem, data_in, v) as u64;
    complete(ctx, reply, Outcome::good(total(data_in) - n, n));
}

/// Requests of one command in flight: the last completion answers.
struct Pending {
    reply: Reply,
    left: AtomicUsize,
    /// Bytes transferred and the first error's sense.
    state: Mutex<(u64, Option<Sense>)>,
    /// Data buffer bytes the command was given (residual base).
    base: u64,
    reads: bool,
}

fn submit(ctx: &Arc<Ctx>, lun: &Lun, reply: Reply, reqs: Vec<BlockRequest>, base: u64) {
    if ctx.aq.is_stopped() {
        // Reset since the request was popped: the driver no longer waits
        // for it, and the reset waits for whatever we start.
        return complete(ctx, &reply, Outcome::response(resp::FAILURE));
    }
    let reads = reqs.first().is_some_and(|r| r.op == BlockOp::Read);
    let p = Arc::new(Pending {
        reply,
        left: AtomicUsize::new(reqs.len()),
        state: Mutex::new((0, None)),
        base,
        reads,
    });
    for r in reqs {
        let (ctx, p) = (ctx.clone(), p.clone());
        let op = r.op;
        lun.backend.submit(
            r,
            Box::new(move |_req, res| {
                {
                    let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
                    match res {
                        Ok(n) if op == BlockOp::Read || op == BlockOp::Write => {
                            st.0 = st.0.saturating_add(n)
                        }
                        Ok(_) => {}
                        Err(e) => {
                            log::debug!("virtio-scsi: {op:?} failed: {e}");
                            let s = match (op, e.raw_os_error()) {
                                (_, Some(libc::EOPNOTSUPP)) => Sense::INVALID_OPCODE,
                                (BlockOp::Read, _) => Sense::UNRECOVERED_READ_ERROR,
                                _ => Sense::WRITE_ERROR,
                            };
                            st.1.get_or_insert(s);
                        }
                    }
                }
                if p.left.fetch_sub(1, Ordering::AcqRel) != 1 {
                    return;
                }
                let (moved, err) = *p.state.lock().unwrap_or_else(|e| e.into_inner());
                let o = match err {
                    Some(s) => Outcome::check(s, p.base),
                    None => {
                        let data_in = if p.reads { moved } else { 0 };
                        Outcome::good(p.base.saturating_sub(moved), data_in)
                    }
                };
                complete(&ctx, &p.reply, o);
            }),
        );
    }
}

/// Pops requests (up to the in-flight bound) and starts them; false
/// once the device was reset.
fn pump_requests(ctx: &Arc<Ctx>) -> bool {
    let batch = {
        let Some(mut q) = ctx.aq.lock(REQUESTQ) else {
            // Not enabled (SeaBIOS uses the request queue only).
            return !ctx.aq.is_stopped();
        };
        super::pop_bounded(&mut q, &ctx.mem, &ctx.inflight, QUEUE_SIZE.into(), |c| {
            prepare(ctx, c)
        })
    };
    for r in batch {
        execute(ctx, r);
    }
    true
}

fn worker(ctx: Arc<Ctx>, stop: Arc<EventFd>) {
    let (Some(kc), Some(kr)) = (ctx.aq.kick(CONTROLQ), ctx.aq.kick(REQUESTQ)) else {
        return;
    };
    loop {
        if !control::pump_control(&ctx) || !pump_requests(&ctx) {
            return;
        }
        let fds = [kc, kr, &stop, &*ctx.more];
        let ready = wait_readable(&fds);
        if ready.contains(&2) || ctx.aq.is_stopped() {
            return;
        }
        for i in ready {
            let _ = fds[i].read();
        }
    }
}

impl VirtioDevice for VirtioScsi {
    fn device_type(&self) -> u16 {
        types::SCSI
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_STORAGE
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn features(&self) -> u64 {
        // No INOUT, HOTPLUG, CHANGE or T10_PI.
        0
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

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only sense_size (20) and cdb_size (24) are writable, whole.
        let Ok(v) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let v = u32::from_le_bytes(v);
        match offset {
            20 => self
                .sense_size
                .store(v.min(MAX_SENSE_SIZE), Ordering::Relaxed),
            24 => self.cdb_size.store(v.min(MAX_CDB_SIZE), Ordering::Relaxed),
            _ => {}
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
            luns: self.luns.clone(),
            lun_ids: self.luns.iter().map(|l| l.id).collect(),
            cdb_size: self.cdb_size.clone(),
            sense_size: self.sense_size.clone(),
            inflight: self.inflight.clone(),
            more,
        });
        let s = stop.clone();
        self.workers.spawn("virtio-scsi", move || worker(ctx, s))?;
        Ok(())
    }

    fn reset(&mut self) {
        self.workers.stop();
        // The queues are stopped and their locks free: completions can
        // finish (see `inflight` for the lock order).
        self.inflight.drain("virtio-scsi", self.drain_bound);
        self.cdb_size.store(CDB_SIZE, Ordering::Relaxed);
        self.sense_size.store(SENSE_SIZE, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
