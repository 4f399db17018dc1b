//! Small pieces the stream-like devices (console, input) share: copying
//! between descriptor chains and host buffers, taking a buffer or
//! re-arming the queue's notification, and polling raw descriptors.

use std::os::fd::RawFd;

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

/// At most this many descriptors of one chain are looked at, empty ones
/// and both directions included: a guest's indirect table may hold
/// 65,535, each read under the queue lock a reset waits for. Far above
/// what drivers use (Linux: a page per descriptor, and our largest
/// message is 128 KiB).
pub(crate) const MAX_SEGMENTS: usize = 1024;

/// The non-empty device-readable (`writable == false`) or device-writable
/// parts of a chain, as (address, length) pairs, in order. A chain of
/// more than [`MAX_SEGMENTS`] descriptors is malformed and yields none:
/// the device answers it as it answers a chain without buffers.
pub(crate) fn segments(
    chain: DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
) -> Vec<(GuestAddress, u32)> {
    let mut segs = Vec::new();
    for (i, d) in chain.enumerate() {
        if i >= MAX_SEGMENTS {
            log::debug!("virtio: a chain of over {MAX_SEGMENTS} descriptors, taken as empty");
            return Vec::new();
        }
        if d.is_write_only() == writable && d.len() > 0 {
            segs.push((d.addr(), d.len()));
        }
    }
    segs
}

/// Copies the start of `segs` (guest memory) into `buf`; returns the
/// bytes copied (stops at the first inaccessible byte).
pub(crate) fn read_segments(
    mem: &GuestMemoryMmap,
    segs: &[(GuestAddress, u32)],
    buf: &mut [u8],
) -> usize {
    let mut done = 0;
    for &(addr, len) in segs {
        let n = (len as usize).min(buf.len() - done);
        if n == 0 || mem.read_slice(&mut buf[done..done + n], addr).is_err() {
            break;
        }
        done += n;
    }
    done
}

/// Copies `data` into `segs` (guest memory); returns the bytes written.
pub(crate) fn write_segments(
    mem: &GuestMemoryMmap,
    segs: &[(GuestAddress, u32)],
    data: &[u8],
) -> usize {
    let mut done = 0;
    for &(addr, len) in segs {
        let n = (len as usize).min(data.len() - done);
        if n == 0 || mem.write_slice(&data[done..done + n], addr).is_err() {
            break;
        }
        done += n;
    }
    done
}

/// Total length of `segs`, saturating (guests may claim 4 GiB each).
pub(crate) fn segments_len(segs: &[(GuestAddress, u32)]) -> u64 {
    segs.iter().map(|s| u64::from(s.1)).sum()
}

/// The next available chain or, when there is none, notifications turned
/// back on (EVENT_IDX: the driver kicks for the next buffer) and a
/// second look for one added meanwhile.
pub(crate) fn pop_or_arm<'a>(
    q: &mut Queue,
    mem: &'a GuestMemoryMmap,
) -> Option<DescriptorChain<&'a GuestMemoryMmap>> {
    if let Some(c) = super::pop_chain(q, mem) {
        return Some(c);
    }
    match q.enable_notification(mem) {
        Ok(true) => super::pop_chain(q, mem),
        _ => None,
    }
}

/// Polls `fds` ((fd, events) pairs) for up to `timeout_ms` (< 0: no
/// timeout); returns each one's revents (all zero on timeout or EINTR).
pub(crate) fn poll_fds(fds: &[(RawFd, i16)], timeout_ms: i32) -> Vec<i16> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds for the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if n <= 0 {
        return vec![0; fds.len()];
    }
    p.iter().map(|p| p.revents).collect()
}

/// Guest segments with 64-bit lengths (storage requests).
pub(crate) type Segs = Vec<(GuestAddress, u64)>;

/// Sums segment lengths without overflow.
pub(crate) fn total(segs: &[(GuestAddress, u64)]) -> u64 {
    segs.iter().fold(0u64, |a, s| a.saturating_add(s.1))
}

/// The part `[skip, skip+len)` of a segment list.
pub(crate) fn slice_segs(segs: &[(GuestAddress, u64)], mut skip: u64, mut len: u64) -> Segs {
    let mut out = Vec::new();
    for &(a, l) in segs {
        if len == 0 {
            break;
        }
        if skip >= l {
            skip -= l;
            continue;
        }
        let n = (l - skip).min(len);
        if let Some(addr) = a.checked_add(skip) {
            out.push((addr, n));
        }
        len -= n;
        skip = 0;
    }
    out
}

/// Fills `buf` from `segs`, starting `skip` bytes in; false if guest
/// memory failed or the segments are shorter.
pub(crate) fn gather(
    mem: &GuestMemoryMmap,
    segs: &[(GuestAddress, u64)],
    skip: u64,
    buf: &mut [u8],
) -> bool {
    let mut done = 0;
    for (a, l) in slice_segs(segs, skip, buf.len() as u64) {
        let n = l as usize;
        if mem.read_slice(&mut buf[done..done + n], a).is_err() {
            return false;
        }
        done += n;
    }
    done == buf.len()
}

/// A queue of 16 in `mem` (rings at 0x1000..0x4000) with one chain
/// available: head 0, indirect, pointing at a table at 0x10000 of
/// `table` entries (addr, len, device-writable), linked in order.
#[cfg(test)]
pub(crate) fn indirect_chain_queue(mem: &GuestMemoryMmap, table: &[(u64, u32, bool)]) -> Queue {
    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const TABLE: u64 = 0x10000;
    let n = table.len() as u64;
    for (i, &(addr, len, w)) in table.iter().enumerate() {
        let d = TABLE + 16 * i as u64;
        let next = i as u64 + 1 < n;
        let flags = u16::from(next) | if w { 2 } else { 0 };
        mem.write_obj(addr, GuestAddress(d)).unwrap();
        mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
        mem.write_obj((i + 1) as u16, GuestAddress(d + 14)).unwrap();
    }
    mem.write_obj(TABLE, GuestAddress(DESC)).unwrap();
    mem.write_obj((16 * n) as u32, GuestAddress(DESC + 8))
        .unwrap();
    mem.write_obj(4u16, GuestAddress(DESC + 12)).unwrap(); // INDIRECT
    mem.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
    mem.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
    let mut q = Queue::new(16).unwrap();
    q.try_set_desc_table_address(GuestAddress(DESC)).unwrap();
    q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
    q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
    q.set_ready(true);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: u64 = 0x80000;

    /// The segments of a chain whose indirect table holds `n`
    /// descriptors, the last one 64 bytes long and the others empty.
    fn segments_of_indirect(n: usize, writable: bool) -> Vec<(GuestAddress, u32)> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut table = vec![(DATA, 0, writable); n];
        table[n - 1].1 = 64;
        let mut q = indirect_chain_queue(&mem, &table);
        let chain = super::super::pop_chain(&mut q, &mem).expect("a chain");
        segments(chain, writable)
    }

    /// Empty descriptors count: a chain of thousands of them is not
    /// walked to its end under the queue lock, and yields no segments
    /// (the device answers it as a chain without buffers).
    #[test]
    fn segments_look_at_most_max_segments_descriptors() {
        for writable in [false, true] {
            let at_cap = segments_of_indirect(MAX_SEGMENTS, writable);
            assert_eq!(at_cap, vec![(GuestAddress(DATA), 64)], "{writable}");
            assert!(segments_of_indirect(MAX_SEGMENTS + 1, writable).is_empty());
            assert!(segments_of_indirect(4000, writable).is_empty());
        }
    }
}
