//! The controller as a PCI function: register and doorbell accesses on
//! the vCPU thread, command processing on a worker thread, completions
//! on the backend's threads.
//!
//! Lock order: the function (`Mutex<NvmePci>`), then the queue state
//! (`Shared::state`). Workers and completions take the state alone and
//! drop it before they lock the function to raise an interrupt.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::admin;
use super::aen::{self, Events};
use super::identify::{Identity, Smart, ONCS_DSM, ONCS_WRITE_ZEROES, WCTEMP};
use super::io;
use super::queues::{in_memory, Cq, Sq};
use super::regs::{self, RegEffect, Regs};
use super::spec::{self, Command, Completion, Status, CQE_SIZE, SQE_SIZE};
use super::{Dsm, NvmeParams, MSIX_BAR, REG_BAR};
use crate::blockif::{BlockIo, BlockOp, BlockRequest};
use crate::pci::config::{BarKind, PciConfig, PciError, PciId};
use crate::pci::{put_le, PciDevice};
use crate::virtio::wait_readable;
use crate::virtio::worker::Workers;

/// Commands fetched from one SQ before the worker looks at the next
/// (bhyve's RAB is 2^4).
const BURST: usize = 16;
/// NVMe's minimum register window (Windows refuses smaller, says bhyve).
const MIN_BAR0: u64 = 16 << 10;
/// PCI Express capability, version 2, root complex integrated endpoint.
const CAP_ID_PCIE: u8 = 0x10;

/// What the admin and I/O command handlers decide.
pub(super) enum Outcome {
    Done {
        status: Status,
        dw0: u32,
    },
    /// Backend requests; the command completes when all of them did.
    Submit(Vec<BlockRequest>),
    /// Kept without completing (an Asynchronous Event Request).
    Held,
    /// Completes once SQ `.0`'s commands in flight did (Delete I/O SQ).
    AfterDrain(u16),
}

impl Outcome {
    pub fn status(status: Status) -> Self {
        Outcome::Done { status, dw0: 0 }
    }
    pub fn ok(dw0: u32) -> Self {
        Outcome::Done {
            status: Status::SUCCESS,
            dw0,
        }
    }
}

/// Queue and feature state, behind `Shared::state`.
pub(super) struct State {
    pub regs: Regs,
    pub sqs: Vec<Option<Sq>>,
    pub cqs: Vec<Option<Cq>>,
    /// I/O queues granted by Set Features (Number of Queues).
    pub nsq: u16,
    pub ncq: u16,
    pub nq_set: bool,
    /// Saved Set Features values by feature ID (Temperature Threshold:
    /// the composite sensor's over threshold; the under one below).
    pub features: [u32; 16],
    pub temp_under: u16,
    /// Command IDs of held Asynchronous Event Requests.
    pub aers: Vec<u16>,
    pub events: Events,
    /// Delete I/O SQ commands waiting for their queue to drain: (the
    /// queue's serial, where the Delete's completion goes).
    pub deletes: Vec<(u64, Target)>,
    /// Commands handed to the backend and not completed yet.
    pub inflight: u32,
    /// I/O commands among them (bounded by `ioslots`).
    pub inflight_io: u32,
    /// CC.EN was set while commands were in flight: RDY follows later.
    pub rdy_pending: bool,
    /// CC.EN was cleared while commands were in flight: RDY stays set
    /// until they finished, since the host reclaims the memory they
    /// transfer to once it reads RDY = 0.
    pub draining: bool,
    /// CC.SHN was set with commands in flight: the shutdown flush follows
    /// the last of them, so that their writes are stable too.
    pub shutdown_pending: bool,
    /// Serial of the shutdown in progress (0: none): a flush finishing
    /// after a reset or a later shutdown reports nothing.
    pub shutdown: u64,
    /// The worker stopped fetching for want of a slot.
    pub stalled: bool,
    pub next_serial: u64,
    pub smart: Smart,
}

impl State {
    fn new(p: &NvmeParams) -> Self {
        let n = usize::from(p.max_queues) + 1;
        let mut s = State {
            regs: Regs::new(p.queue_entries),
            sqs: vec![None; n],
            cqs: vec![None; n],
            nsq: p.max_queues,
            ncq: p.max_queues,
            nq_set: false,
            features: [0; 16],
            temp_under: 0,
            aers: Vec::new(),
            events: Events::default(),
            deletes: Vec::new(),
            inflight: 0,
            inflight_io: 0,
            rdy_pending: false,
            draining: false,
            shutdown_pending: false,
            shutdown: 0,
            stalled: false,
            next_serial: 1,
            smart: Smart::default(),
        };
        s.default_features();
        s
    }

    fn default_features(&mut self) {
        self.features = [0; 16];
        self.features[usize::from(spec::feat::TEMP_THRESHOLD)] = u32::from(WCTEMP);
        self.temp_under = 0;
        // Volatile write cache enabled: writes are stable after Flush.
        self.features[usize::from(spec::feat::VOLATILE_WC)] = 1;
    }

    pub fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// Controller reset: queues gone, features back to defaults. Commands
    /// still in the backend complete into nothing (serials differ).
    fn reset(&mut self, p: &NvmeParams) {
        for q in self.sqs.iter_mut() {
            *q = None;
        }
        for q in self.cqs.iter_mut() {
            *q = None;
        }
        self.nsq = p.max_queues;
        self.ncq = p.max_queues;
        self.nq_set = false;
        self.default_features();
        self.aers.clear();
        self.events.reset();
        self.deletes.clear();
        self.rdy_pending = false;
        self.draining = false;
        self.shutdown_pending = false;
        self.shutdown = 0;
        self.stalled = false;
        let cc = self.regs.cc;
        let (aqa, asq, acq) = (self.regs.aqa, self.regs.asq, self.regs.acq);
        self.regs.reset();
        self.regs.cc = cc & !regs::CC_EN;
        (self.regs.aqa, self.regs.asq, self.regs.acq) = (aqa, asq, acq);
    }

    /// Posts a completion for a command of SQ `sqid` (serial `sq_serial`)
    /// to CQ `cqid` (serial `cq_serial`); returns the CQ to signal.
    pub(super) fn post(
        &mut self,
        mem: &GuestMemoryMmap,
        target: &Target,
        status: Status,
        dw0: u32,
    ) -> Option<u16> {
        let sq_live = self
            .sqs
            .get(usize::from(target.sqid))
            .and_then(|q| q.as_ref())
            .filter(|q| q.serial == target.sq_serial)
            .map(|q| q.head as u16);
        let cq = self
            .cqs
            .get_mut(usize::from(target.cqid))
            .and_then(|q| q.as_mut())
            .filter(|q| q.serial == target.cq_serial)?;
        match sq_live {
            Some(sqhd) => {
                let c = Completion {
                    dw0,
                    sqid: target.sqid,
                    cid: target.cid,
                    status,
                };
                cq.post(mem, &c, sqhd);
                Some(target.cqid)
            }
            // The SQ was deleted meanwhile: its command completes into
            // nothing, and its slot is free again.
            None => {
                cq.unreserve();
                None
            }
        }
    }

    /// A command of SQ `target` left the backend (its completion posted);
    /// when it was the last one of a queue being deleted, the queue goes
    /// and the Delete completes. Returns the CQ to signal.
    fn sq_drained(&mut self, mem: &GuestMemoryMmap, target: &Target) -> Option<u16> {
        let qid = usize::from(target.sqid);
        let sq = self
            .sqs
            .get_mut(qid)
            .and_then(|q| q.as_mut())
            .filter(|q| q.serial == target.sq_serial)?;
        sq.inflight = sq.inflight.saturating_sub(1);
        if sq.inflight > 0 || !sq.deleting {
            return None;
        }
        self.sqs[qid] = None;
        let i = self.deletes.iter().position(|d| d.0 == target.sq_serial)?;
        let (_, del) = self.deletes.swap_remove(i);
        self.post(mem, &del, Status::SUCCESS, 0)
    }

    /// The INTx level: some CQ with interrupts enabled has entries and
    /// vector 0 is not masked (INTMS).
    fn intx_level(&self) -> bool {
        self.regs.intms & 1 == 0 && self.cqs.iter().flatten().any(|q| q.ien && q.pending())
    }
}

/// Where a command's completion goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub sqid: u16,
    pub sq_serial: u64,
    pub cqid: u16,
    pub cq_serial: u64,
    pub cid: u16,
}

/// Reached by the function, its worker and the backend's completions.
pub(super) struct Shared {
    pub mem: GuestMemoryMmap,
    pub backend: Arc<dyn BlockIo>,
    pub params: NvmeParams,
    pub ident: Identity,
    /// Namespace size in bytes (a whole number of blocks).
    pub size: u64,
    pub can_delete: bool,
    pub read_only: bool,
    pub state: Mutex<State>,
    kick: EventFd,
    func: Weak<Mutex<NvmePci>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lba_shift(&self) -> u32 {
        self.ident.lba_shift
    }

    pub fn blocks(&self) -> u64 {
        self.ident.blocks
    }

    fn kick(&self) {
        let _ = self.kick.write(1);
    }

    /// Raises the vectors of `cqs` (MSI-X) or updates INTx.
    fn signal(&self, cqs: &[u16]) {
        if cqs.is_empty() {
            return;
        }
        if let Some(f) = self.func.upgrade() {
            f.lock().unwrap_or_else(|e| e.into_inner()).interrupt(cqs);
        }
    }

    /// Fetches and runs commands until no SQ has work it can start.
    fn process(self: &Arc<Self>) {
        loop {
            let mut subs: Vec<(BlockRequest, Arc<Join>)> = Vec::new();
            let mut fire: Vec<u16> = Vec::new();
            let mut progress = false;
            {
                let mut st = self.lock();
                if !st.regs.ready() {
                    return;
                }
                st.stalled = false;
                if st.deliver_events(&self.mem) {
                    fire.push(0);
                }
                for qid in 0..st.sqs.len() {
                    for _ in 0..BURST {
                        if !self.step(&mut st, qid, &mut subs, &mut fire) {
                            break;
                        }
                        progress = true;
                    }
                }
            }
            for (req, join) in subs {
                let (s, j) = (self.clone(), join.clone());
                self.backend
                    .submit(req, Box::new(move |req, r| s.request_done(&j, &req, r)));
            }
            fire.sort_unstable();
            fire.dedup();
            self.signal(&fire);
            if !progress {
                return;
            }
        }
    }

    /// Fetches and starts one command from SQ `qid`; false when it has
    /// none or cannot start one now.
    fn step(
        self: &Arc<Self>,
        st: &mut State,
        qid: usize,
        subs: &mut Vec<(BlockRequest, Arc<Join>)>,
        fire: &mut Vec<u16>,
    ) -> bool {
        let Some(sq) = st.sqs[qid].as_ref().filter(|q| q.has_work()) else {
            return false;
        };
        let (cqid, sq_serial) = (sq.cqid, sq.serial);
        if qid != 0 && st.inflight_io >= self.params.ioslots {
            st.stalled = true;
            return false;
        }
        let Some(cq) = st.cqs.get_mut(usize::from(cqid)).and_then(|q| q.as_mut()) else {
            return false;
        };
        if !cq.reserve() {
            st.stalled = true;
            return false;
        }
        let cq_serial = cq.serial;
        let cmd = st.sqs[qid].as_mut().expect("checked").fetch(&self.mem);
        let target = Target {
            sqid: qid as u16,
            sq_serial,
            cqid,
            cq_serial,
            cid: cmd.cid,
        };
        let outcome = if qid == 0 {
            admin::execute(self, st, &cmd)
        } else {
            io::execute(self, st, &cmd)
        };
        match outcome {
            Outcome::Done { status, dw0 } => {
                if qid != 0 {
                    st.smart.account(&cmd, status, 0);
                }
                fire.extend(st.post(&self.mem, &target, status, dw0));
            }
            Outcome::Held => {
                if let Some(cq) = st.cqs[usize::from(cqid)].as_mut() {
                    cq.unreserve();
                }
            }
            // The admin CQ slot stays reserved for the Delete's completion.
            Outcome::AfterDrain(q) => {
                if let Some(sq) = st.sqs.get(usize::from(q)).and_then(|s| s.as_ref()) {
                    st.deletes.push((sq.serial, target));
                }
            }
            Outcome::Submit(reqs) if reqs.is_empty() => {
                fire.extend(st.post(&self.mem, &target, Status::SUCCESS, 0));
            }
            Outcome::Submit(reqs) => {
                let io = qid != 0;
                st.inflight += 1;
                if let Some(sq) = st.sqs[qid].as_mut() {
                    sq.inflight += 1;
                }
                st.inflight_io += u32::from(io);
                let join = Arc::new(Join {
                    target,
                    cmd,
                    io,
                    left: Mutex::new((reqs.len(), Status::SUCCESS)),
                });
                subs.extend(reqs.into_iter().map(|r| (r, join.clone())));
            }
        }
        true
    }

    /// The flush of shutdown `id` (CC.SHN), then SHST complete.
    fn shutdown_flush(self: &Arc<Self>, id: u64) {
        let s = self.clone();
        self.backend.submit(
            BlockRequest {
                op: BlockOp::Flush,
                offset: 0,
                len: 0,
                buffers: crate::blockif::BlockBuffers::None,
                fua: false,
            },
            Box::new(move |_, r| {
                if let Err(e) = r {
                    log::warn!("nvme: flush at shutdown: {e}");
                }
                let mut st = s.lock();
                if st.shutdown == id && regs::cc_shn(st.regs.cc) != 0 {
                    st.regs.set_shst(regs::SHST_COMPLETE);
                }
            }),
        );
    }

    /// One backend request finished (on a backend thread).
    fn request_done(self: &Arc<Self>, join: &Join, req: &BlockRequest, r: std::io::Result<u64>) {
        let status = match r {
            Ok(_) => Status::SUCCESS,
            // Deallocation is advisory.
            Err(e) if req.op == BlockOp::Discard && e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Status::SUCCESS
            }
            Err(e) => {
                log::debug!("nvme: {:?} at {:#x}: {e}", req.op, req.offset);
                match req.op {
                    BlockOp::Read | BlockOp::Write => Status::DATA_TRANSFER_ERROR,
                    _ => Status::INTERNAL_ERROR,
                }
            }
        };
        let status = {
            let mut left = join.left.lock().unwrap_or_else(|e| e.into_inner());
            if left.1.is_success() {
                left.1 = status;
            }
            left.0 -= 1;
            if left.0 > 0 {
                return;
            }
            left.1
        };
        let mut flush = None;
        let fire = {
            let mut st = self.lock();
            st.inflight = st.inflight.saturating_sub(1);
            st.inflight_io = st.inflight_io.saturating_sub(u32::from(join.io));
            if join.io {
                st.smart.account(&join.cmd, status, 1 << self.lba_shift());
            }
            if st.inflight == 0 {
                if st.draining && !st.regs.enabled() {
                    st.regs.csts &= !regs::CSTS_RDY;
                }
                st.draining = false;
                flush = std::mem::take(&mut st.shutdown_pending).then_some(st.shutdown);
                if st.rdy_pending && st.regs.enabled() {
                    st.rdy_pending = false;
                    st.regs.csts |= regs::CSTS_RDY;
                    // Doorbells rung before RDY found the worker idle.
                    self.kick();
                }
            }
            let mut f: Vec<u16> = st
                .post(&self.mem, &join.target, status, 0)
                .into_iter()
                .collect();
            f.extend(st.sq_drained(&self.mem, &join.target));
            if st.stalled {
                self.kick();
            }
            f
        };
        // Unlocked: the backend may complete the flush on this thread.
        if let Some(id) = flush {
            self.shutdown_flush(id);
        }
        self.signal(&fire);
    }
}

/// A command waiting for its backend requests.
struct Join {
    target: Target,
    cmd: Command,
    io: bool,
    /// Requests not finished yet and the first failure.
    left: Mutex<(usize, Status)>,
}

pub struct NvmePci {
    config: PciConfig,
    shared: Arc<Shared>,
    workers: Workers,
}

impl NvmePci {
    /// A controller for `backend`, shared (its worker and completions
    /// reach it for interrupts). Starts its worker thread.
    pub fn new_shared(
        params: NvmeParams,
        backend: Arc<dyn BlockIo>,
        mem: GuestMemoryMmap,
    ) -> Result<Arc<Mutex<NvmePci>>, PciError> {
        let mut params = params;
        params.max_queues = params.max_queues.clamp(1, super::MAX_QUEUES);
        params.queue_entries = params.queue_entries.clamp(2, 65536);
        params.ioslots = params.ioslots.max(1);
        let info = backend.info();
        let lba_shift = params
            .sector_size
            .max(512)
            .next_power_of_two()
            .trailing_zeros();
        let oncs = ONCS_WRITE_ZEROES
            | match params.dsm {
                Dsm::Auto if info.can_delete => ONCS_DSM,
                Dsm::Enable => ONCS_DSM,
                _ => 0,
            };
        let ident = Identity {
            serial: params.serial.clone(),
            eui64: params.eui64,
            blocks: info.size >> lba_shift,
            lba_shift,
            oncs,
            read_only: info.read_only,
            dealloc_zeroes: info.can_delete,
            max_queues: params.max_queues,
        };
        let nvec = params.max_queues + 1;
        let mut config = PciConfig::new(PciId {
            vendor: super::VENDOR,
            device: super::DEVICE,
            revision: 0,
            class: 0x01,
            subclass: 0x08,
            prog_if: 0x02,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        let bar0 = (regs::DOORBELLS + 8 * u64::from(nvec)).max(MIN_BAR0);
        config.add_bar(REG_BAR, BarKind::Mem64, bar0)?;
        let table = u64::from(nvec) * 16;
        let pba = table.div_ceil(4096) * 4096;
        config.add_bar(MSIX_BAR, BarKind::Mem32, pba + 4096)?;
        config.add_msix(nvec, (MSIX_BAR, 0), (MSIX_BAR, pba))?;
        // PCIe capabilities register: version 2, type 9 (RCiEP); the
        // rest of the 60-byte structure reads as zeroes.
        let mut pcie = vec![0u8; 58];
        pcie[0] = 0x92;
        config.add_capability(CAP_ID_PCIE, &pcie, &[])?;
        config.set_intpin(1);
        let kick = EventFd::new(EFD_NONBLOCK).map_err(|_| PciError::BadBar(REG_BAR))?;
        let state = Mutex::new(State::new(&params));
        let f = Arc::new_cyclic(|this| {
            Mutex::new(NvmePci {
                config,
                shared: Arc::new(Shared {
                    mem,
                    backend,
                    size: ident.blocks << lba_shift,
                    can_delete: info.can_delete,
                    read_only: info.read_only,
                    ident,
                    params,
                    state,
                    kick,
                    func: this.clone(),
                }),
                workers: Workers::new(),
            })
        });
        f.lock()
            .unwrap_or_else(|e| e.into_inner())
            .start_worker()
            .map_err(|e| {
                log::error!("nvme: {e}");
                PciError::BadBar(REG_BAR)
            })?;
        Ok(f)
    }

    fn start_worker(&mut self) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let s = self.shared.clone();
        self.workers.spawn("nvme", move || loop {
            let ready = wait_readable(&[&stop, &s.kick]);
            if ready.contains(&0) {
                return;
            }
            let _ = s.kick.read();
            s.process();
        })
    }

    /// Signals completions posted to `cqs`.
    fn interrupt(&mut self, cqs: &[u16]) {
        if self.config.msix_enabled() {
            let st = self.shared.lock();
            let vectors: Vec<u16> = cqs
                .iter()
                .filter_map(|&q| st.cqs.get(usize::from(q)).and_then(|c| c.as_ref()))
                .filter(|c| c.ien)
                .map(|c| c.vector)
                .collect();
            let level = st.intx_level();
            drop(st);
            for v in vectors {
                self.config.raise_interrupt(v);
            }
            self.config.set_intx(level);
        } else {
            self.sync_intx();
        }
    }

    /// The INTx level is kept current even while MSI-X is on (the
    /// configuration gates the pin): a guest turning MSI-X off with
    /// completions unconsumed gets INTx at once.
    fn sync_intx(&mut self) {
        let level = self.shared.lock().intx_level();
        self.config.set_intx(level);
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        let sh = self.shared.clone();
        let mut st = sh.lock();
        match st.regs.write32(offset, v) {
            RegEffect::None => {}
            RegEffect::Enable => {
                let (sqs, cqs) = st.regs.admin_sizes();
                let (asq, acq) = (st.regs.asq, st.regs.acq);
                if !in_memory(&sh.mem, asq, sqs, SQE_SIZE)
                    || !in_memory(&sh.mem, acq, cqs, CQE_SIZE)
                {
                    st.regs.csts |= regs::CSTS_CFS;
                    return;
                }
                let (ss, cs) = (st.serial(), st.serial());
                st.sqs[0] = Some(Sq::new(asq, sqs, 0, ss));
                st.cqs[0] = Some(Cq::new(acq, cqs, true, 0, cs));
                if st.inflight == 0 {
                    st.regs.csts |= regs::CSTS_RDY;
                } else {
                    // (RDY may still be set by a reset draining.)
                    st.regs.csts &= !regs::CSTS_RDY;
                    st.rdy_pending = true;
                }
            }
            RegEffect::Disable => {
                st.reset(&sh.params);
                if st.inflight > 0 {
                    st.draining = true;
                    st.regs.csts |= regs::CSTS_RDY;
                }
                drop(st);
                self.config.set_intx(false);
                return;
            }
            RegEffect::Shutdown => {
                let id = st.serial();
                st.shutdown = id;
                if st.inflight > 0 {
                    st.shutdown_pending = true;
                } else {
                    drop(st);
                    sh.shutdown_flush(id);
                }
                return;
            }
        }
        if matches!(offset, regs::INTMS | regs::INTMC) {
            drop(st);
            self.sync_intx();
        }
    }

    fn doorbell(&mut self, offset: u64, v: u32) {
        let idx = (offset - regs::DOORBELLS) / 4;
        let (qid, is_cq) = ((idx / 2) as usize, idx % 2 == 1);
        let sh = self.shared.clone();
        let mut st = sh.lock();
        let accepted = if is_cq {
            st.cqs
                .get_mut(qid)
                .and_then(|q| q.as_mut())
                .map(|q| q.set_head(v))
        } else {
            match st.sqs.get_mut(qid).and_then(|q| q.as_mut()) {
                // Being deleted: tails are ignored, and no error.
                Some(q) if q.deleting => return,
                q => q.map(|q| q.set_tail(v)),
            }
        };
        let error = match accepted {
            Some(true) => None,
            Some(false) => Some(aen::INVALID_DOORBELL_VALUE),
            None => Some(aen::INVALID_DOORBELL_REGISTER),
        };
        if let Some(info) = error {
            log::debug!("nvme: doorbell {idx} write {v} ignored");
            // Only a ready controller has doorbells to get wrong.
            let ready = st.regs.enabled() && st.regs.ready();
            let kick = ready && st.events.error(info) && !st.aers.is_empty();
            drop(st);
            if kick {
                sh.kick();
            }
            return;
        }
        let kick = !is_cq || st.stalled;
        drop(st);
        if kick {
            sh.kick();
        }
        if is_cq {
            self.sync_intx();
        }
    }

    /// Controller state for tests: (inflight, stalled).
    #[cfg(test)]
    pub(super) fn debug_state(&self) -> (u32, bool) {
        let st = self.shared.lock();
        (st.inflight, st.stalled)
    }
}

impl PciDevice for NvmePci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar != REG_BAR || offset >= regs::DOORBELLS {
            return put_le(data, 0);
        }
        self.shared.lock().regs.read(offset, data);
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != REG_BAR {
            return;
        }
        let v = crate::pci::le_value(data);
        match (data.len(), offset >= regs::DOORBELLS) {
            (4, true) if offset.is_multiple_of(4) => self.doorbell(offset, v as u32),
            (4, false) if offset.is_multiple_of(4) => self.write_reg(offset, v as u32),
            (8, false) if offset.is_multiple_of(8) => {
                self.write_reg(offset, v as u32);
                self.write_reg(offset + 4, (v >> 32) as u32);
            }
            _ => log::debug!("nvme: {}-byte write at {offset:#x} ignored", data.len()),
        }
    }

    fn reset(&mut self) {
        let sh = self.shared.clone();
        let mut st = sh.lock();
        st.reset(&sh.params);
        st.regs.reset();
        drop(st);
        self.config.set_intx(false);
    }
}
