//! The receive queue: backend frames to the guest.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{features, poll_fds, NetCtx, FAILED_BACKEND_PAUSE, MAX_FRAME, RXQ, VNET_HDR_LEN};
use crate::virtio::chain_io::MAX_SEGMENTS;

/// Frames moved per queue-lock hold, so a reset never waits long.
const BATCH: usize = 64;

/// Where a receive round stopped.
#[derive(Debug, PartialEq, Eq)]
enum RxWait {
    /// No frame waits: wait for the backend (or a kick).
    Backend,
    /// A frame waits but the guest has no room: wait for a kick only.
    Kick,
    /// A full batch went through: go again at once.
    More,
    /// The backend failed: retry a little later.
    Error,
    Stop,
}

/// The worker's state between rounds.
struct Rx {
    /// `virtio_net_hdr_v1` then the frame; a frame read but not yet
    /// delivered stays here (`pending`).
    buf: Vec<u8>,
    pending: Option<usize>,
    /// Writable segments of the chains being filled, and per chain its
    /// head and the bytes it takes.
    segs: Vec<(GuestAddress, usize)>,
    chains: Vec<(u16, usize)>,
    logged_error: bool,
}

pub(super) fn worker(ctx: Arc<NetCtx>) {
    let Some(kick) = ctx.queues.kick(RXQ) else {
        return;
    };
    let mut rx = Rx {
        buf: vec![0u8; VNET_HDR_LEN + MAX_FRAME],
        pending: None,
        segs: Vec::new(),
        chains: Vec::new(),
        logged_error: false,
    };
    let (kick_fd, stop) = (kick.as_raw_fd(), ctx.stop.as_raw_fd());
    let backend = ctx.backend.poll_fd();
    loop {
        let revents = match rx_round(&ctx, &mut rx) {
            RxWait::Stop => return,
            RxWait::More => continue,
            RxWait::Backend => poll_fds(
                &[
                    (kick_fd, libc::POLLIN),
                    (stop, libc::POLLIN),
                    (backend, libc::POLLIN),
                ],
                -1,
            ),
            RxWait::Kick => poll_fds(&[(kick_fd, libc::POLLIN), (stop, libc::POLLIN)], -1),
            // Not the backend's descriptor: it may poll ready forever.
            RxWait::Error => poll_fds(
                &[(kick_fd, libc::POLLIN), (stop, libc::POLLIN)],
                FAILED_BACKEND_PAUSE.as_millis() as i32,
            ),
        };
        if revents[1] != 0 || ctx.queues.is_stopped() {
            return;
        }
        if revents[0] != 0 {
            let _ = kick.read();
        }
    }
}

/// Moves up to [`BATCH`] frames from the backend into the ring.
fn rx_round(ctx: &NetCtx, rx: &mut Rx) -> RxWait {
    let mem = &ctx.mem;
    let mut used = false;
    let mut force = false;
    let wait = {
        let Some(mut q) = ctx.queues.lock(RXQ) else {
            return RxWait::Stop;
        };
        let mut wait = RxWait::More;
        let mut skipped = 0;
        for _ in 0..BATCH {
            let len = match rx.pending {
                Some(len) => len,
                None => match receive(ctx, rx) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait = RxWait::Backend;
                        break;
                    }
                    // A signal, or a runt frame the backend should
                    // not have given: next one.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted | io::ErrorKind::InvalidData
                        ) =>
                    {
                        skipped += 1;
                        continue;
                    }
                    Err(e) => {
                        if !rx.logged_error {
                            log::warn!("virtio-net: backend receive failed: {e}");
                            rx.logged_error = true;
                        }
                        wait = RxWait::Error;
                        break;
                    }
                },
            };
            rx.pending = Some(len);
            match deliver(ctx, &mut q, rx, len) {
                Delivery::Done { batched } => {
                    rx.pending = None;
                    used = true;
                    force |= batched;
                }
                Delivery::Dropped => {
                    rx.pending = None;
                    ctx.rx_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Delivery::NoRoom => {
                    // Turn kicks on, then look once more: buffers added
                    // meanwhile would not kick.
                    // A ring whose avail index runs more than a ring
                    // ahead says "more" forever while nothing can be
                    // popped (found in review: the worker spun): wait
                    // for the driver instead.
                    if !crate::virtio::ring_lies(&q, mem)
                        && matches!(q.enable_notification(mem), Ok(true))
                    {
                        let _ = q.disable_notification(mem);
                        continue;
                    }
                    let _ = q.enable_notification(mem);
                    wait = RxWait::Kick;
                    break;
                }
            }
        }
        if skipped == BATCH {
            // Nothing but unusable reads while the descriptor polls
            // ready: a broken backend, not traffic.
            if !rx.logged_error {
                log::warn!("virtio-net: the backend gives no usable frames");
                rx.logged_error = true;
            }
            wait = RxWait::Error;
        }
        let notify = used && q.needs_notification(mem).unwrap_or(true);
        used = notify || force;
        wait
    };
    if used {
        ctx.queues.signal_used(RXQ as u16);
    }
    wait
}

/// Reads one frame from the backend into `rx.buf` so that the buffer
/// holds a `virtio_net_hdr_v1` then the frame; returns the frame length.
fn receive(ctx: &NetCtx, rx: &mut Rx) -> io::Result<usize> {
    // Nothing read is end of file (a stream whose peer went away), never
    // a frame: left as is, it would be read again at once, forever.
    let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "end of file");
    if ctx.backend.has_vnet_hdr() {
        let n = ctx.backend.recv(&mut rx.buf)?;
        if n == 0 {
            return Err(eof());
        }
        if n < VNET_HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame shorter than its header",
            ));
        }
        Ok(n - VNET_HDR_LEN)
    } else {
        rx.buf[..VNET_HDR_LEN].fill(0);
        match ctx.backend.recv(&mut rx.buf[VNET_HDR_LEN..])? {
            0 => Err(eof()),
            n => Ok(n),
        }
    }
}

enum Delivery {
    /// Published; `batched` when several used entries went out at once
    /// (the EVENT_IDX bookkeeping then undercounts: signal anyway).
    Done {
        batched: bool,
    },
    Dropped,
    NoRoom,
}

/// Places the pending frame in one chain, or with MRG_RXBUF in as many
/// as it needs; when the guest has not posted enough room, nothing is
/// consumed.
fn deliver(ctx: &NetCtx, q: &mut Queue, rx: &mut Rx, len: usize) -> Delivery {
    let mem = &ctx.mem;
    let merge = ctx.features & features::MRG_RXBUF != 0;
    let gh = ctx.guest_hdr;
    let total = gh + len;
    let start = VNET_HDR_LEN - gh;
    let saved = q.next_avail();
    rx.segs.clear();
    rx.chains.clear();
    let mut room = 0usize;
    // Descriptors looked at for this frame: a guest may offer 256 chains
    // of 65,535 indirect descriptors, most of them empty.
    let mut visited = 0usize;
    while room < total {
        // A ring whose every buffer together cannot hold one frame would
        // otherwise stall receive forever.
        if rx.chains.len() >= usize::from(q.size()) {
            q.set_next_avail(saved);
            log::debug!("virtio-net: dropped a {len}-byte frame: receive buffers too small");
            return Delivery::Dropped;
        }
        let Some(chain) = crate::virtio::pop_chain(q, mem) else {
            q.set_next_avail(saved);
            return Delivery::NoRoom;
        };
        let mut cap = 0usize;
        for d in chain.clone() {
            visited += 1;
            if visited > MAX_SEGMENTS {
                q.set_next_avail(saved);
                log::debug!(
                    "virtio-net: dropped a {len}-byte frame: over {MAX_SEGMENTS} descriptors"
                );
                return Delivery::Dropped;
            }
            if !d.is_write_only() {
                continue;
            }
            let l = (d.len() as usize).min(total.saturating_sub(room + cap));
            if l > 0 {
                rx.segs.push((d.addr(), l));
                cap += l;
            } else if room + cap >= total {
                break;
            }
        }
        rx.chains.push((chain.head_index(), cap));
        room += cap;
        if !merge {
            break;
        }
    }
    if room < total {
        // One chain without MRG_RXBUF, too small: the guest keeps it.
        q.set_next_avail(saved);
        log::debug!("virtio-net: dropped a {len}-byte frame: receive buffer too small");
        return Delivery::Dropped;
    }
    if gh == VNET_HDR_LEN {
        let n = if merge { rx.chains.len() as u16 } else { 1 };
        rx.buf[10..12].copy_from_slice(&n.to_le_bytes());
    } else {
        rx.buf.copy_within(0..gh, start);
    }
    let image = &rx.buf[start..start + total];
    let mut pos = 0;
    let mut ok = true;
    for &(addr, l) in &rx.segs {
        if mem.write_slice(&image[pos..pos + l], addr).is_err() {
            ok = false;
            break;
        }
        pos += l;
    }
    if !ok {
        log::debug!("virtio-net: receive buffer outside guest memory");
    }
    // Each chain's share of the frame (all of it was capped to fit).
    let entries: Vec<(u16, u32)> = rx
        .chains
        .iter()
        .map(|&(head, cap)| (head, if ok { cap as u32 } else { 0 }))
        .collect();
    match publish(q, mem, &entries) {
        Ok(()) => Delivery::Done {
            batched: entries.len() > 1,
        },
        Err(()) => Delivery::Dropped,
    }
}

/// Adds `entries` to the used ring and makes them visible to the driver
/// at once: a merged frame's buffers must all be there when the driver
/// sees the first.
fn publish(q: &mut Queue, mem: &GuestMemoryMmap, entries: &[(u16, u32)]) -> Result<(), ()> {
    let Some((&(last_head, last_len), rest)) = entries.split_last() else {
        return Ok(());
    };
    let base = q.next_used();
    let size = q.size();
    for (i, &(head, len)) in rest.iter().enumerate() {
        let slot = u64::from(base.wrapping_add(i as u16) % size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let addr = q
            .used_ring()
            .checked_add(4 + slot * 8)
            .map(GuestAddress)
            .ok_or(())?;
        mem.write_slice(&elem, addr).map_err(|_| ())?;
    }
    // The last entry's add_used publishes the index past all of them.
    q.set_next_used(base.wrapping_add(rest.len() as u16));
    q.add_used(mem, last_head, last_len).map_err(|_| ())
}
