//! Admin commands (NVMe 1.4 §5), run on the worker with the queue state
//! locked. Every field is the guest's and is checked before use.

use super::ctrl::{Outcome, Shared, State};
use super::identify::{self, AERL, MAX_TRANSFER, WCTEMP};
use super::prp;
use super::queues::{in_memory, Cq, Sq};
use super::regs::{cc_iocqes, cc_iosqes};
use super::spec::{admin, feat, Command, Status, CQES_LOG2, CQE_SIZE, SQES_LOG2, SQE_SIZE};
use crate::blockif::{BlockBuffers, BlockOp, BlockRequest};

const BROADCAST_NSID: u32 = 0xffff_ffff;

pub(super) fn execute(sh: &Shared, st: &mut State, cmd: &Command) -> Outcome {
    if cmd.psdt() != 0 || cmd.fuse() != 0 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    match cmd.opc {
        admin::DELETE_SQ => delete_sq(st, cmd),
        admin::CREATE_SQ => create_sq(sh, st, cmd),
        admin::GET_LOG_PAGE => get_log_page(sh, st, cmd),
        admin::DELETE_CQ => delete_cq(st, cmd),
        admin::CREATE_CQ => create_cq(sh, st, cmd),
        admin::IDENTIFY => identify(sh, cmd),
        // Commands complete too fast to be aborted: "not aborted".
        admin::ABORT => Outcome::ok(1),
        admin::SET_FEATURES => set_features(sh, st, cmd),
        admin::GET_FEATURES => get_features(sh, st, cmd),
        admin::ASYNC_EVENT => {
            // Held until an event or a reset; one waiting completes it.
            if st.aers.len() > usize::from(AERL) {
                return Outcome::status(Status::AER_LIMIT);
            }
            if let Some(dw0) = st.events.take() {
                return Outcome::ok(dw0);
            }
            st.aers.push(cmd.cid);
            Outcome::Held
        }
        admin::FW_COMMIT => Outcome::status(Status::INVALID_FW_SLOT),
        admin::FORMAT_NVM => format(sh, cmd),
        admin::SECURITY_SEND | admin::SECURITY_RECV | admin::SANITIZE | admin::GET_LBA_STATUS => {
            Outcome::status(Status::INVALID_FIELD)
        }
        _ => Outcome::status(Status::INVALID_OPCODE),
    }
}

fn done(r: Result<(), Status>) -> Outcome {
    match r {
        Ok(()) => Outcome::ok(0),
        Err(s) => Outcome::status(s),
    }
}

fn qid_size(cmd: &Command) -> (usize, u32) {
    ((cmd.cdw10 & 0xffff) as usize, (cmd.cdw10 >> 16) + 1)
}

fn create_cq(sh: &Shared, st: &mut State, cmd: &Command) -> Outcome {
    let (qid, size) = qid_size(cmd);
    let (pc, ien, iv) = (
        cmd.cdw11 & 1 != 0,
        cmd.cdw11 & 2 != 0,
        (cmd.cdw11 >> 16) as u16,
    );
    if !pc || cc_iocqes(st.regs.cc) != CQES_LOG2 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    if qid == 0 || qid > usize::from(st.ncq) || st.cqs[qid].is_some() {
        return Outcome::status(Status::INVALID_QID);
    }
    if size < 2 || size > st.regs.admin_mqes() {
        return Outcome::status(Status::INVALID_QUEUE_SIZE);
    }
    if iv > sh.params.max_queues {
        return Outcome::status(Status::INVALID_VECTOR);
    }
    if cmd.prp1 & 0xfff != 0 || !in_memory(&sh.mem, cmd.prp1, size, CQE_SIZE) {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let serial = st.serial();
    st.cqs[qid] = Some(Cq::new(cmd.prp1, size, ien, iv, serial));
    Outcome::ok(0)
}

fn create_sq(sh: &Shared, st: &mut State, cmd: &Command) -> Outcome {
    let (qid, size) = qid_size(cmd);
    let (pc, cqid) = (cmd.cdw11 & 1 != 0, (cmd.cdw11 >> 16) as usize);
    if !pc || cc_iosqes(st.regs.cc) != SQES_LOG2 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    if qid == 0 || qid > usize::from(st.nsq) || st.sqs[qid].is_some() {
        return Outcome::status(Status::INVALID_QID);
    }
    if size < 2 || size > st.regs.admin_mqes() {
        return Outcome::status(Status::INVALID_QUEUE_SIZE);
    }
    if cqid == 0 || cqid >= st.cqs.len() || st.cqs[cqid].is_none() {
        return Outcome::status(Status::CQ_INVALID);
    }
    if cmd.prp1 & 0xfff != 0 || !in_memory(&sh.mem, cmd.prp1, size, SQE_SIZE) {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let serial = st.serial();
    st.sqs[qid] = Some(Sq::new(cmd.prp1, size, cqid as u16, serial));
    Outcome::ok(0)
}

fn delete_sq(st: &mut State, cmd: &Command) -> Outcome {
    let qid = (cmd.cdw10 & 0xffff) as usize;
    let Some(sq) = st
        .sqs
        .get_mut(qid)
        .and_then(|q| q.as_mut())
        .filter(|q| qid != 0 && !q.deleting)
    else {
        return Outcome::status(Status::INVALID_QID);
    };
    if sq.inflight == 0 {
        st.sqs[qid] = None;
        return Outcome::ok(0);
    }
    // Its commands still move data to or from guest memory: the host may
    // reuse that memory once the Delete completed, so it completes after
    // them (their completions are posted first, as the spec allows).
    sq.deleting = true;
    Outcome::AfterDrain(qid as u16)
}

fn delete_cq(st: &mut State, cmd: &Command) -> Outcome {
    let qid = (cmd.cdw10 & 0xffff) as usize;
    if qid == 0 || qid >= st.cqs.len() || st.cqs[qid].is_none() {
        return Outcome::status(Status::INVALID_QID);
    }
    if st
        .sqs
        .iter()
        .skip(1)
        .flatten()
        .any(|q| usize::from(q.cqid) == qid)
    {
        return Outcome::status(Status::INVALID_QUEUE_DELETION);
    }
    st.cqs[qid] = None;
    Outcome::ok(0)
}

fn identify(sh: &Shared, cmd: &Command) -> Outcome {
    let id = &sh.ident;
    let data = match cmd.cdw10 & 0xff {
        0x00 if cmd.nsid == 1 => id.namespace(),
        0x00 => return Outcome::status(Status::INVALID_NAMESPACE),
        0x01 => id.controller(),
        0x02 if cmd.nsid >= 0xffff_fffe => return Outcome::status(Status::INVALID_FIELD),
        0x02 => id.active_ns_list(cmd.nsid),
        0x03 if cmd.nsid == 1 => id.ns_descriptors(),
        0x03 => return Outcome::status(Status::INVALID_NAMESPACE),
        _ => return Outcome::status(Status::INVALID_FIELD),
    };
    done(prp::copy_to(&sh.mem, cmd.prp1, cmd.prp2, &data))
}

fn get_log_page(sh: &Shared, st: &mut State, cmd: &Command) -> Outcome {
    let lid = cmd.cdw10 as u8;
    let numd = (((cmd.cdw11 & 0xffff) << 16) | (cmd.cdw10 >> 16)) as u64 + 1;
    let len = (numd * 4).min(MAX_TRANSFER);
    let off = u64::from(cmd.cdw12) | (u64::from(cmd.cdw13) << 32);
    if cmd.nsid != 0 && cmd.nsid != 1 && cmd.nsid != BROADCAST_NSID {
        return Outcome::status(Status::INVALID_NAMESPACE);
    }
    // Retain Asynchronous Event: reading without it clears the events
    // this page reports.
    let rae = cmd.cdw10 & (1 << 15) != 0;
    let page = match lid {
        identify::LOG_ERROR => Some(st.events.error_log()),
        _ => identify::log_page(lid, &st.smart),
    };
    let Some(page) = page else {
        return Outcome::status(Status::INVALID_LOG_PAGE);
    };
    if off % 4 != 0 || off >= page.len() as u64 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let end = (off + len).min(page.len() as u64) as usize;
    let r = prp::copy_to(&sh.mem, cmd.prp1, cmd.prp2, &page[off as usize..end]);
    if r.is_ok() && !rae {
        st.events.log_read(lid);
    }
    done(r)
}

/// Features we keep, and whether they are namespace specific.
fn known_feature(fid: u8) -> Option<bool> {
    match fid {
        feat::ERROR_RECOVERY => Some(true),
        feat::ARBITRATION
        | feat::POWER_MGMT
        | feat::TEMP_THRESHOLD
        | feat::VOLATILE_WC
        | feat::NUM_QUEUES
        | feat::IRQ_COALESCING
        | feat::IRQ_VECTOR_CONFIG
        | feat::WRITE_ATOMICITY
        | feat::ASYNC_EVENT_CONFIG => Some(false),
        _ => None,
    }
}

fn num_queues(st: &State) -> u32 {
    u32::from(st.nsq - 1) | (u32::from(st.ncq - 1) << 16)
}

fn set_features(sh: &Shared, st: &mut State, cmd: &Command) -> Outcome {
    let fid = cmd.cdw10 as u8;
    let Some(ns_specific) = known_feature(fid) else {
        return Outcome::status(Status::INVALID_FIELD);
    };
    if cmd.cdw10 & (1 << 31) != 0 {
        return Outcome::status(Status::FEATURE_NOT_SAVEABLE);
    }
    if ns_specific {
        if cmd.nsid == BROADCAST_NSID {
            return Outcome::status(Status::INVALID_FIELD);
        }
        if cmd.nsid != 1 {
            return Outcome::status(Status::INVALID_NAMESPACE);
        }
    } else if cmd.nsid != 0 && cmd.nsid != BROADCAST_NSID {
        return Outcome::status(Status::FEATURE_NOT_NS_SPECIFIC);
    }
    let v = cmd.cdw11;
    let mut dw0 = 0;
    match fid {
        feat::NUM_QUEUES => {
            if st.nq_set {
                return Outcome::status(Status::SEQUENCE_ERROR);
            }
            let (nsqr, ncqr) = (v & 0xffff, v >> 16);
            if nsqr == 0xffff || ncqr == 0xffff {
                return Outcome::status(Status::INVALID_FIELD);
            }
            let max = u32::from(sh.params.max_queues);
            st.nsq = (nsqr + 1).min(max) as u16;
            st.ncq = (ncqr + 1).min(max) as u16;
            st.nq_set = true;
            dw0 = num_queues(st);
        }
        // One power state.
        feat::POWER_MGMT if v & 0x1f != 0 => return Outcome::status(Status::INVALID_FIELD),
        feat::TEMP_THRESHOLD => {
            // "All sensors" (Fh) is the composite one: we have no other.
            let Some(under) = temp_select(v, true) else {
                return Outcome::status(Status::INVALID_FIELD);
            };
            if under {
                st.temp_under = v as u16;
            } else {
                st.features[usize::from(fid)] = v & 0xffff;
            }
            return Outcome::ok(0);
        }
        feat::IRQ_VECTOR_CONFIG => {
            let iv = v & 0xffff;
            if iv > u32::from(sh.params.max_queues)
                || !st.cqs.iter().flatten().any(|q| u32::from(q.vector) == iv)
            {
                return Outcome::status(Status::INVALID_FIELD);
            }
        }
        _ => {}
    }
    if fid != feat::NUM_QUEUES {
        st.features[usize::from(fid)] = v;
    }
    Outcome::ok(dw0)
}

fn get_features(sh: &Shared, st: &State, cmd: &Command) -> Outcome {
    let fid = cmd.cdw10 as u8;
    let sel = (cmd.cdw10 >> 8) & 7;
    let Some(ns_specific) = known_feature(fid) else {
        return Outcome::status(Status::INVALID_FIELD);
    };
    if ns_specific && cmd.nsid != 1 {
        return Outcome::status(Status::INVALID_NAMESPACE);
    }
    // Temperature Threshold: the composite sensor's over or under one.
    let under = if fid == feat::TEMP_THRESHOLD {
        match temp_select(cmd.cdw11, false) {
            Some(under) => under,
            None => return Outcome::status(Status::INVALID_FIELD),
        }
    } else {
        false
    };
    let current = match fid {
        feat::NUM_QUEUES => num_queues(st),
        feat::TEMP_THRESHOLD if under => u32::from(st.temp_under),
        _ => st.features[usize::from(fid)],
    };
    let dw0 = match sel {
        0 => current,
        // Not saveable: "saved" is the default.
        1 | 2 => match fid {
            feat::NUM_QUEUES => {
                let m = u32::from(sh.params.max_queues - 1);
                m | (m << 16)
            }
            feat::TEMP_THRESHOLD if under => 0,
            feat::TEMP_THRESHOLD => u32::from(WCTEMP),
            feat::VOLATILE_WC => 1,
            _ => 0,
        },
        // Capabilities: changeable, namespace specific.
        3 => 0b100 | (u32::from(ns_specific) << 1),
        _ => return Outcome::status(Status::INVALID_FIELD),
    };
    Outcome::ok(dw0)
}

/// The threshold a Temperature Threshold CDW11 selects: Some(true) for
/// the under threshold, Some(false) for the over one, None when TMPSEL
/// names a sensor we do not have (sensors 1-8: only the composite
/// temperature is implemented; 9-Eh reserved; Fh "all sensors" only in
/// a Set) or THSEL is reserved.
fn temp_select(cdw11: u32, set: bool) -> Option<bool> {
    let (tmpsel, thsel) = ((cdw11 >> 16) & 0xf, (cdw11 >> 20) & 3);
    match (tmpsel, thsel) {
        (0, 0 | 1) => Some(thsel == 1),
        (0xf, 0 | 1) if set => Some(thsel == 1),
        _ => None,
    }
}

fn format(sh: &Shared, cmd: &Command) -> Outcome {
    if cmd.nsid != 1 && cmd.nsid != BROADCAST_NSID {
        return Outcome::status(Status::INVALID_NAMESPACE);
    }
    let (lbaf, pi, ses) = (cmd.cdw10 & 0xf, (cmd.cdw10 >> 5) & 7, (cmd.cdw10 >> 9) & 7);
    if lbaf != 0 {
        return Outcome::status(Status::INVALID_FORMAT);
    }
    if pi != 0 || ses > 1 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    if sh.read_only {
        return Outcome::status(Status::NS_WRITE_PROTECTED);
    }
    // User data erase: every block reads as zeroes afterwards.
    Outcome::Submit(vec![BlockRequest {
        op: BlockOp::WriteZeroes { unmap: true },
        offset: 0,
        len: sh.size,
        buffers: BlockBuffers::None,
        fua: false,
    }])
}
