//! Submission and completion queues: ring indexes, the guest's doorbell
//! values (checked), and completion slot accounting.
//!
//! A command is fetched only once a slot of its completion queue is
//! reserved for it, so a completion always has room: when a CQ is full
//! (the host has not consumed it) the SQs feeding it stall until a CQ
//! head doorbell frees entries, as the specification asks.

use std::sync::atomic::Ordering;

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::spec::{Command, Completion, CQE_SIZE, SQE_SIZE};

#[derive(Debug, Clone)]
pub struct Sq {
    /// Distinguishes this queue from an earlier one with the same ID.
    pub serial: u64,
    pub base: u64,
    pub size: u32,
    pub head: u32,
    pub tail: u32,
    pub cqid: u16,
    /// Commands fetched from this queue and still in the backend.
    pub inflight: u32,
    /// A Delete I/O SQ waits for `inflight` to drain: nothing more is
    /// fetched and tail doorbells are ignored meanwhile.
    pub deleting: bool,
}

impl Sq {
    pub fn new(base: u64, size: u32, cqid: u16, serial: u64) -> Self {
        Sq {
            serial,
            base,
            size: size.max(2),
            head: 0,
            tail: 0,
            cqid,
            inflight: 0,
            deleting: false,
        }
    }

    /// A tail doorbell write; false (ignored) when the value is not an
    /// index of this queue.
    pub fn set_tail(&mut self, v: u32) -> bool {
        if v >= self.size || self.deleting {
            return false;
        }
        self.tail = v;
        true
    }

    pub fn has_work(&self) -> bool {
        self.head != self.tail && !self.deleting
    }

    /// Reads the entry at the head and advances it. A read outside guest
    /// memory yields an all-zero command (which fails as an invalid one).
    pub fn fetch(&mut self, mem: &GuestMemoryMmap) -> Command {
        let mut b = [0u8; SQE_SIZE as usize];
        let at = self.base.wrapping_add(u64::from(self.head) * SQE_SIZE);
        if mem.read_slice(&mut b, GuestAddress(at)).is_err() {
            b = [0; SQE_SIZE as usize];
        }
        self.head = (self.head + 1) % self.size;
        Command::parse(&b)
    }
}

#[derive(Debug, Clone)]
pub struct Cq {
    pub base: u64,
    pub size: u32,
    pub head: u32,
    pub tail: u32,
    pub phase: bool,
    /// Interrupts enabled and the MSI-X vector.
    pub ien: bool,
    pub vector: u16,
    /// Slots promised to fetched commands not yet completed.
    pub reserved: u32,
    /// Distinguishes this queue from an earlier one with the same ID
    /// (completions for a deleted queue are dropped).
    pub serial: u64,
}

impl Cq {
    pub fn new(base: u64, size: u32, ien: bool, vector: u16, serial: u64) -> Self {
        Cq {
            base,
            size: size.max(2),
            head: 0,
            tail: 0,
            phase: true,
            ien,
            vector,
            reserved: 0,
            serial,
        }
    }

    /// Entries the host has not consumed yet.
    pub fn used(&self) -> u32 {
        (self.tail + self.size - self.head) % self.size
    }

    /// Whether the host has entries to consume (interrupt cause).
    pub fn pending(&self) -> bool {
        self.head != self.tail
    }

    /// Reserves a slot for a command about to be fetched.
    pub fn reserve(&mut self) -> bool {
        // One slot always stays empty: a full ring has tail + 1 == head.
        if self.used() + self.reserved + 1 < self.size {
            self.reserved += 1;
            true
        } else {
            false
        }
    }

    /// Gives back a reservation whose command completes elsewhere or not
    /// at all (a stored Asynchronous Event Request).
    pub fn unreserve(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// A head doorbell write: accepted only when it moves the head over
    /// entries we posted.
    pub fn set_head(&mut self, v: u32) -> bool {
        if v >= self.size {
            return false;
        }
        let advance = (v + self.size - self.head) % self.size;
        if advance > self.used() {
            return false;
        }
        self.head = v;
        true
    }

    /// Writes a completion at the tail using a reserved slot. The phase
    /// tag is stored last, with release ordering, so the host never sees
    /// a valid tag on a half-written entry.
    pub fn post(&mut self, mem: &GuestMemoryMmap, c: &Completion, sqhd: u16) {
        self.unreserve();
        if self.used() + 1 >= self.size {
            // Cannot happen with reservations; never overwrite.
            log::warn!("nvme: completion queue overflow, completion dropped");
            return;
        }
        let at = GuestAddress(self.base.wrapping_add(u64::from(self.tail) * CQE_SIZE));
        let b = c.to_bytes(sqhd, self.phase);
        let dw3 = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let ok = mem.write_slice(&b[..12], at).is_ok()
            && at
                .checked_add(12)
                .is_some_and(|a| mem.store(dw3, a, Ordering::Release).is_ok());
        if !ok {
            log::debug!("nvme: completion queue entry outside guest memory");
        }
        self.tail += 1;
        if self.tail == self.size {
            self.tail = 0;
            self.phase = !self.phase;
        }
    }
}

/// Whether `entries` entries of `entry_size` bytes at `base` lie in
/// guest memory.
pub fn in_memory(mem: &GuestMemoryMmap, base: u64, entries: u32, entry_size: u64) -> bool {
    let len = u64::from(entries) * entry_size;
    base.checked_add(len).is_some()
        && usize::try_from(len)
            .is_ok_and(|l| GuestMemoryBackend::check_range(mem, GuestAddress(base), l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::spec::Status;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap()
    }

    fn cqe(cid: u16) -> Completion {
        Completion {
            dw0: 0,
            sqid: 1,
            cid,
            status: Status::SUCCESS,
        }
    }

    #[test]
    fn reservations_keep_one_slot_free() {
        let m = mem();
        let mut cq = Cq::new(0x1000, 4, true, 1, 1);
        assert!(cq.reserve());
        assert!(cq.reserve());
        assert!(cq.reserve());
        assert!(!cq.reserve(), "4 entries hold 3 completions");
        for cid in 0..3 {
            cq.post(&m, &cqe(cid), 0);
        }
        assert_eq!(cq.used(), 3);
        assert!(!cq.reserve(), "full until the host consumes");
        assert!(cq.set_head(0), "a head that does not move is fine");
        assert!(!cq.set_head(4), "out of range");
        assert!(cq.set_head(2));
        assert!(cq.reserve());
        assert!(cq.reserve());
        assert!(!cq.reserve());
        // Phase tags: the first pass writes 1, after wrapping 0.
        cq.post(&m, &cqe(3), 0);
        let dw3: u32 = m.read_obj(GuestAddress(0x1000 + 3 * 16 + 12)).unwrap();
        assert_eq!((dw3 >> 16) & 1, 1);
        cq.post(&m, &cqe(4), 0);
        let dw3: u32 = m.read_obj(GuestAddress(0x1000 + 12)).unwrap();
        assert_eq!((dw3 >> 16) & 1, 0);
        assert_eq!(dw3 & 0xffff, 4);
        // All consumed; a head beyond the tail is refused.
        assert!(cq.set_head(1));
        assert_eq!(cq.used(), 0);
        assert!(!cq.set_head(2));
    }

    #[test]
    fn tails_and_fetch() {
        let m = mem();
        let mut sq = Sq::new(0x2000, 8, 1, 1);
        assert!(!sq.set_tail(8));
        assert!(!sq.has_work());
        let c = Command {
            opc: 2,
            cid: 77,
            ..Default::default()
        };
        m.write_slice(&c.to_bytes(), GuestAddress(0x2000)).unwrap();
        assert!(sq.set_tail(1));
        assert_eq!(sq.fetch(&m).cid, 77);
        assert!(!sq.has_work());
        // A queue outside memory yields zeroed commands.
        let mut sq = Sq::new(1 << 40, 2, 1, 2);
        sq.set_tail(1);
        assert_eq!(sq.fetch(&m), Command::default());
        assert!(in_memory(&m, 0, 1024, 64));
        assert!(!in_memory(&m, 0, 1025, 64));
        assert!(!in_memory(&m, u64::MAX - 8, 2, 64));
    }
}
