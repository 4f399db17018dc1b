//! Asynchronous events (NVMe 1.4 §5.2) and the Error Information log
//! (log page 01h). The controller reports one kind of event: Error
//! status for doorbell writes it ignores (Figure 146: a write to the
//! doorbell of a queue that does not exist, or an invalid value: an SQ
//! tail beyond the queue, a CQ head beyond what was posted).
//!
//! An event waits for an Asynchronous Event Request; once reported, its
//! type is masked (later events of that type are logged, not reported)
//! until the host reads the type's log page with RAE = 0. A controller
//! reset forgets pending and masked events; the error log stays.

use super::ctrl::{State, Target};
use super::identify::{LOG_CHANGED_NS, LOG_ERROR, LOG_SMART};
use super::spec::Status;
use vm_memory::GuestMemoryMmap;

/// Asynchronous event types (completion dword 0, bits 2:0).
const TYPE_ERROR: u8 = 0;
const TYPE_SMART: u8 = 1;
const TYPE_NOTICE: u8 = 2;

/// Error status event information (bits 15:8).
pub const INVALID_DOORBELL_REGISTER: u8 = 0x00;
pub const INVALID_DOORBELL_VALUE: u8 = 0x01;

/// Bytes of an Error Information log entry (ELPE = 0: the log holds
/// the newest one).
const ERROR_ENTRY: usize = 64;

#[derive(Debug, Default)]
pub struct Events {
    /// Completion dword 0 of events not reported yet, oldest first; at
    /// most one per event type, so bounded.
    pending: Vec<u32>,
    /// Event types reported and not cleared yet (bit per type).
    masked: u8,
    /// Errors logged since power-on: the newest entry's Error Count
    /// (0: no entry).
    errors: u64,
}

impl Events {
    /// Logs an error of type Error status with `info`; true when an
    /// event became pending (the type is neither masked nor pending).
    pub fn error(&mut self, info: u8) -> bool {
        // The count is the entry's identity; 0 would mean "no entry".
        self.errors = self.errors.wrapping_add(1).max(1);
        self.raise(TYPE_ERROR, info, LOG_ERROR)
    }

    fn raise(&mut self, ty: u8, info: u8, lid: u8) -> bool {
        if self.masked & (1 << ty) != 0 || self.pending.iter().any(|e| *e as u8 & 7 == ty) {
            return false;
        }
        self.pending
            .push(u32::from(ty) | (u32::from(info) << 8) | (u32::from(lid) << 16));
        true
    }

    /// The oldest pending event, now reported: its type is masked.
    pub fn take(&mut self) -> Option<u32> {
        if self.pending.is_empty() {
            return None;
        }
        let e = self.pending.remove(0);
        self.masked |= 1 << (e as u8 & 7);
        Some(e)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The host read log page `lid` with RAE = 0: the events that page
    /// reports are cleared (unmasked).
    pub fn log_read(&mut self, lid: u8) {
        let ty = match lid {
            LOG_ERROR => TYPE_ERROR,
            LOG_SMART => TYPE_SMART,
            LOG_CHANGED_NS => TYPE_NOTICE,
            _ => return,
        };
        self.masked &= !(1 << ty);
    }

    /// Controller reset: requests are gone, so are events waiting for
    /// them and masks; the log stays (it is the controller's history).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.masked = 0;
    }

    /// The Error Information log page: the newest entry. An invalid
    /// doorbell write belongs to no command, so SQID, CID and the
    /// parameter location are FFFFh, as the spec asks then.
    pub fn error_log(&self) -> Vec<u8> {
        let mut b = vec![0u8; ERROR_ENTRY];
        if self.errors != 0 {
            b[0..8].copy_from_slice(&self.errors.to_le_bytes());
            b[8..12].fill(0xff);
            b[14..16].fill(0xff);
        }
        b
    }
}

impl State {
    /// Completes held Asynchronous Event Requests with pending events,
    /// oldest request first; returns whether the admin CQ got entries.
    /// With the admin CQ full the rest waits for its head doorbell.
    pub(super) fn deliver_events(&mut self, mem: &GuestMemoryMmap) -> bool {
        let mut posted = false;
        while !self.aers.is_empty() && self.events.has_pending() {
            let (Some(sq), Some(cq)) = (self.sqs[0].as_ref(), self.cqs[0].as_mut()) else {
                break;
            };
            let sq_serial = sq.serial;
            if !cq.reserve() {
                self.stalled = true;
                break;
            }
            let target = Target {
                sqid: 0,
                sq_serial,
                cqid: 0,
                cq_serial: cq.serial,
                cid: self.aers.remove(0),
            };
            let Some(dw0) = self.events.take() else {
                break;
            };
            posted |= self.post(mem, &target, Status::SUCCESS, dw0).is_some();
        }
        posted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_and_clearing() {
        let mut e = Events::default();
        assert_eq!(e.error_log(), vec![0u8; 64], "no entry yet");
        assert!(e.error(INVALID_DOORBELL_REGISTER));
        // One pending event per type.
        assert!(!e.error(INVALID_DOORBELL_VALUE));
        assert_eq!(e.take(), Some(0x01_0000));
        assert_eq!(e.take(), None);
        // Masked once reported: logged, not reported.
        assert!(!e.error(INVALID_DOORBELL_VALUE));
        assert_eq!(e.error_log()[0], 3);
        e.log_read(LOG_SMART);
        assert!(!e.error(INVALID_DOORBELL_VALUE), "another page");
        e.log_read(LOG_ERROR);
        assert!(e.error(INVALID_DOORBELL_VALUE));
        assert_eq!(e.take(), Some(0x01_0100));
        e.reset();
        assert!(e.error(INVALID_DOORBELL_REGISTER), "reset unmasks");
        assert_eq!(e.error_log()[0], 6, "the log stays");
    }
}
