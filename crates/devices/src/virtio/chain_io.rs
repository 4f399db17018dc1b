//! Small pieces the stream-like devices (console, input) share: copying
//! between descriptor chains and host buffers, taking a buffer or
//! re-arming the queue's notification, and polling raw descriptors.

use std::os::fd::RawFd;

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

/// At most this many segments are remembered of one chain: a guest's
/// indirect table may claim tens of thousands.
pub(crate) const MAX_SEGMENTS: usize = 1024;

/// The device-readable (`writable == false`) or device-writable parts of
/// a chain, as (address, length) pairs, in order.
pub(crate) fn segments(
    chain: DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
) -> Vec<(GuestAddress, u32)> {
    let it: Box<dyn Iterator<Item = _>> = if writable {
        Box::new(chain.writable())
    } else {
        Box::new(chain.readable())
    };
    it.filter(|d| d.len() > 0)
        .take(MAX_SEGMENTS)
        .map(|d| (d.addr(), d.len()))
        .collect()
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
