//! [`drain_queue`] against a guest that keeps posting: the work per
//! queue-lock hold is bounded, nothing is lost between batches, and
//! EVENT_IDX notifications are re-armed only once the ring is empty.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{drain_queue, Drained, DRAIN_BUDGET};

const QSIZE: u16 = 16;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const DATA: u64 = 0x10000;

fn setup(event_idx: bool) -> (GuestMemoryMmap, Queue) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    // Descriptor i: one 16-byte device-writable buffer.
    for i in 0..u64::from(QSIZE) {
        let d = DESC + 16 * i;
        mem.write_obj(DATA + 16 * i, GuestAddress(d)).unwrap();
        mem.write_obj(16u32, GuestAddress(d + 8)).unwrap();
        mem.write_obj(2u16, GuestAddress(d + 12)).unwrap();
    }
    let mut q = Queue::new(QSIZE).unwrap();
    q.try_set_desc_table_address(GuestAddress(DESC)).unwrap();
    q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
    q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
    q.set_event_idx(event_idx);
    q.set_ready(true);
    (mem, q)
}

/// The driver makes descriptor `head` available.
fn post(mem: &GuestMemoryMmap, head: u16) {
    let idx: u16 = mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
    let slot = u64::from(idx % QSIZE);
    mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot))
        .unwrap();
    mem.write_obj(idx.wrapping_add(1), GuestAddress(AVAIL + 2))
        .unwrap();
}

fn used_idx(mem: &GuestMemoryMmap) -> u16 {
    mem.read_obj(GuestAddress(USED + 2)).unwrap()
}

#[test]
fn a_guest_posting_as_fast_as_served_gets_one_batch_per_call() {
    for event_idx in [false, true] {
        let (mem, mut q) = setup(event_idx);
        post(&mem, 0);
        let mut served = 0usize;
        let d = drain_queue(&mut q, &mem, |c| {
            served += 1;
            // The guest re-posts the buffer as soon as it was taken
            // (bounded, so an unbounded drain still ends).
            if served < 10_000 {
                post(&mem, c.head_index());
            }
            16
        });
        assert_eq!(served, DRAIN_BUDGET, "one batch per queue-lock hold");
        assert!(d.more, "chains are left: the caller must come back");
        assert_eq!(usize::from(used_idx(&mem)), DRAIN_BUDGET);
        // The next call goes on where this one stopped.
        let mut next = 0usize;
        let d2 = drain_queue(&mut q, &mem, |_| {
            next += 1;
            16
        });
        assert_eq!(next, 1);
        assert!(!d2.more);
        assert_eq!(usize::from(used_idx(&mem)), DRAIN_BUDGET + 1);
    }
}

#[test]
fn exactly_a_budget_then_empty_re_arms() {
    let (mem, mut q) = setup(true);
    let mut served = 0usize;
    post(&mem, 0);
    let d = drain_queue(&mut q, &mem, |c| {
        served += 1;
        if served < DRAIN_BUDGET {
            post(&mem, c.head_index());
        }
        0
    });
    assert_eq!(served, DRAIN_BUDGET);
    assert!(!d.more, "the ring is empty");
    // EVENT_IDX armed: avail_event (after the used ring) is the next
    // index the device expects.
    let avail_event: u16 = mem
        .read_obj(GuestAddress(USED + 4 + 8 * u64::from(QSIZE)))
        .unwrap();
    assert_eq!(usize::from(avail_event), DRAIN_BUDGET);
}

#[test]
fn an_empty_or_lying_ring_yields_nothing() {
    let (mem, mut q) = setup(false);
    assert_eq!(
        drain_queue(&mut q, &mem, |_| unreachable!()),
        Drained {
            notify: false,
            more: false
        }
    );
    mem.write_obj(0x8000u16, GuestAddress(AVAIL + 2)).unwrap();
    assert_eq!(
        drain_queue(&mut q, &mem, |_| unreachable!()),
        Drained {
            notify: false,
            more: false
        }
    );
}
