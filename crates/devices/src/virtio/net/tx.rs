//! The transmit queue: guest frames to the backend.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use crate::virtio::chain_io::MAX_SEGMENTS;
use crate::virtio::DRAIN_BUDGET;

use super::{
    features, hdr, poll_fds, NetBackend, NetCtx, L2_OVERHEAD, MAX_FRAME, TXQ, VNET_HDR_LEN,
};

/// Where a transmit round stopped.
#[derive(Debug, PartialEq, Eq)]
enum TxWait {
    /// The ring is empty and notifications are on: wait for a kick.
    Kick,
    /// The backend pushed back: wait until it is writable.
    Backend,
    /// A full batch went out and frames are left: go again at once
    /// (the queue lock was released in between, so a reset gets in).
    More,
    /// The device was reset.
    Stop,
}

/// The backend of a device configured without one: drops every frame.
pub(super) struct NullBackend;

impl NetBackend for NullBackend {
    fn has_vnet_hdr(&self) -> bool {
        false
    }
    fn offload_features(&self) -> u64 {
        0
    }
    fn set_offloads(&self, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn recv(&self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        Ok(frame.len())
    }
    fn poll_fd(&self) -> RawFd {
        -1
    }
}

pub(super) fn worker(ctx: Arc<NetCtx>) {
    let Some(kick) = ctx.queues.kick(TXQ) else {
        return;
    };
    // Room for the backend's header, then the largest frame.
    let mut buf = vec![0u8; VNET_HDR_LEN + MAX_FRAME];
    let stop = ctx.stop.as_raw_fd();
    loop {
        let wait = tx_round(&ctx, &mut buf);
        let watch_backend = wait == TxWait::Backend;
        let revents = match wait {
            TxWait::Stop => return,
            TxWait::More if ctx.queues.is_stopped() => return,
            TxWait::More => continue,
            TxWait::Kick => poll_fds(
                &[(kick.as_raw_fd(), libc::POLLIN), (stop, libc::POLLIN)],
                -1,
            ),
            TxWait::Backend => poll_fds(
                &[(ctx.backend.poll_fd(), libc::POLLOUT), (stop, libc::POLLIN)],
                // A backend that never becomes writable again (its
                // interface went away) must not wedge the queue.
                100,
            ),
        };
        if revents[1] != 0 || ctx.queues.is_stopped() {
            return;
        }
        if !watch_backend {
            let _ = kick.read();
        }
    }
}

/// Sends the available frames, up to a batch ([`DRAIN_BUDGET`]), then
/// re-enables notifications (checking once more, as EVENT_IDX requires)
/// unless frames are left, and signals the driver if it asked.
fn tx_round(ctx: &NetCtx, buf: &mut [u8]) -> TxWait {
    let mem = &ctx.mem;
    let mut used = false;
    let wait = {
        let Some(mut q) = ctx.queues.lock(TXQ) else {
            return TxWait::Stop;
        };
        let mut idle_rounds = 0;
        let mut sent = 0;
        let wait = loop {
            let _ = q.disable_notification(mem);
            let mut progressed = false;
            let mut blocked = false;
            while sent < DRAIN_BUDGET {
                let Some(chain) = crate::virtio::pop_chain(&mut q, mem) else {
                    break;
                };
                sent += 1;
                let head = chain.head_index();
                // The backend is non-blocking, so sending under the
                // queue lock never waits.
                match transmit(ctx, chain, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        q.go_to_previous_position();
                        blocked = true;
                        break;
                    }
                    Err(e) => log::debug!("virtio-net: frame not sent: {e}"),
                    Ok(()) => {}
                }
                // A transmit buffer is only read: 0 bytes written.
                if q.add_used(mem, head, 0).is_err() {
                    break;
                }
                used = true;
                progressed = true;
            }
            if blocked {
                break TxWait::Backend;
            }
            if sent >= DRAIN_BUDGET && crate::virtio::has_available(&q, mem) {
                break TxWait::More;
            }
            idle_rounds = if progressed { 0 } else { idle_rounds + 1 };
            match q.enable_notification(mem) {
                Ok(true) if idle_rounds < 2 => continue,
                _ => break TxWait::Kick,
            }
        };
        used = used && q.needs_notification(mem).unwrap_or(true);
        wait
    };
    if used {
        ctx.queues.signal_used(TXQ as u16);
    }
    wait
}

/// Reads one chain into `buf` as `virtio_net_hdr_v1` + frame, checks it
/// and sends it. Dropped frames are `Ok` (logged at debug).
fn transmit(
    ctx: &NetCtx,
    chain: DescriptorChain<&GuestMemoryMmap>,
    buf: &mut [u8],
) -> io::Result<()> {
    let gh = ctx.guest_hdr;
    // A 10-byte header lands at 2 so that the frame starts at 12 either way.
    let start = VNET_HDR_LEN - gh;
    let mut end = start;
    // Every descriptor looked at counts, empty and device-writable ones
    // too: a table of 65,535 would otherwise all be read under the lock.
    for (i, d) in chain.enumerate() {
        if i >= MAX_SEGMENTS {
            return drop_frame("over MAX_SEGMENTS descriptors");
        }
        if d.is_write_only() {
            continue;
        }
        let len = d.len() as usize;
        if len > buf.len() - end {
            return drop_frame("larger than 64 KiB");
        }
        if ctx
            .mem
            .read_slice(&mut buf[end..end + len], d.addr())
            .is_err()
        {
            return drop_frame("outside guest memory");
        }
        end += len;
    }
    if end - start < gh + 14 {
        return drop_frame("shorter than its headers");
    }
    if start != 0 {
        buf.copy_within(start..VNET_HDR_LEN, 0);
    }
    buf[10..12].fill(0);
    let frame_len = end - VNET_HDR_LEN;
    let gso = buf[1];
    if !gso_allowed(ctx.features, gso) {
        return drop_frame("GSO type the driver did not negotiate");
    }
    if ctx.features & features::CSUM == 0 {
        buf[0] &= !hdr::F_NEEDS_CSUM;
    }
    if let Some(mtu) = ctx.mtu {
        if gso & !hdr::GSO_ECN == hdr::GSO_NONE && frame_len > usize::from(mtu) + L2_OVERHEAD {
            return drop_frame("larger than the MTU");
        }
    }
    let out = if ctx.backend.has_vnet_hdr() {
        &buf[..end]
    } else {
        if gso != hdr::GSO_NONE || buf[0] & hdr::F_NEEDS_CSUM != 0 {
            return drop_frame("offload without a backend header");
        }
        &buf[VNET_HDR_LEN..end]
    };
    ctx.backend.send(out).map(|_| ())
}

fn drop_frame(why: &str) -> io::Result<()> {
    log::debug!("virtio-net: dropped a guest frame: {why}");
    Ok(())
}

/// Whether a guest's `gso_type` is one it negotiated.
fn gso_allowed(neg: u64, gso: u8) -> bool {
    if gso & hdr::GSO_ECN != 0 && neg & features::HOST_ECN == 0 {
        return false;
    }
    match gso & !hdr::GSO_ECN {
        hdr::GSO_NONE => true,
        hdr::GSO_TCPV4 => neg & features::HOST_TSO4 != 0,
        hdr::GSO_TCPV6 => neg & features::HOST_TSO6 != 0,
        hdr::GSO_UDP => neg & features::HOST_UFO != 0,
        _ => false,
    }
}
