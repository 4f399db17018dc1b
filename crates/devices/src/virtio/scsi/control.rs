//! virtio-scsi's control queue: task management and asynchronous
//! notification requests.

use std::time::Duration;

use virtio_queue::QueueT;

use super::{ctrl, find_lun, gather, resp, scatter, split_chain, total, Ctx, CONTROLQ};
use crate::virtio::chain_io::pop_or_arm;

/// Waits until every request popped so far has completed (or the device
/// was reset): what a task management function promises.
fn wait_idle(ctx: &Ctx) {
    // A reset does not wake us: look at it every 100 ms.
    while !ctx.inflight.wait_idle(Duration::from_millis(100)) && !ctx.aq.is_stopped() {}
}

/// Answers one control request; returns the bytes of its response.
fn control(ctx: &Ctx, req: &[u8]) -> Option<Vec<u8>> {
    let typ = u32::from_le_bytes(req.get(0..4)?.try_into().ok()?);
    match typ {
        ctrl::T_TMF => {
            let sub = u32::from_le_bytes(req.get(4..8)?.try_into().ok()?);
            let lun = req.get(8..16)?;
            let r = match find_lun(&ctx.luns, lun) {
                Err(()) => resp::BAD_TARGET,
                Ok(_) if sub > ctrl::TMF_QUERY_TASK_SET => resp::FUNCTION_REJECTED,
                Ok(_) => {
                    // Nothing can be cancelled once with the backend:
                    // abort and reset mean "all earlier requests are
                    // done", after which no task is left to query.
                    wait_idle(ctx);
                    resp::FUNCTION_COMPLETE
                }
            };
            Some(vec![r])
        }
        ctrl::T_AN_QUERY | ctrl::T_AN_SUBSCRIBE => {
            // event_actual 0: no asynchronous events are reported.
            req.get(..16)?;
            let mut v = vec![0u8; 5];
            v[4] = resp::OK;
            Some(v)
        }
        _ => None,
    }
}

/// Serves the control queue; false once the device was reset.
pub(super) fn pump_control(ctx: &Ctx) -> bool {
    loop {
        let chain = {
            let Some(mut q) = ctx.aq.lock(CONTROLQ) else {
                return !ctx.aq.is_stopped();
            };
            pop_or_arm(&mut q, &ctx.mem).map(|c| (c.head_index(), split_chain(c)))
        };
        let Some((head, segs)) = chain else {
            return true;
        };
        let mut reply = None;
        if let Some((r, w)) = segs {
            // The largest control request (TMF) is 28 bytes.
            let mut req = vec![0u8; (total(&r).min(28)) as usize];
            if gather(&ctx.mem, &r, 0, &mut req) {
                reply = control(ctx, &req).map(|a| (w, a));
            }
        }
        let notify = {
            let Some(mut q) = ctx.aq.lock(CONTROLQ) else {
                return false;
            };
            // Under the queue lock, which a reset waits for: no answer
            // lands in guest memory after the reset.
            let used = reply.map_or(0, |(w, a)| scatter(&ctx.mem, &w, &a) as u32);
            if q.add_used(&ctx.mem, head, used).is_err() {
                return true;
            }
            q.needs_notification(&ctx.mem).unwrap_or(true)
        };
        if notify {
            ctx.aq.signal_used(CONTROLQ as u16);
        }
    }
}
