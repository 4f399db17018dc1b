//! virtio-net: transmit chains with arbitrary virtio-net headers and
//! frames, and arbitrary receive buffers for frames the input injects,
//! over a datagram socketpair backend (the host side is ours).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::driver::Machine;
use super::Cursor;
use crate::virtio::net::sock::{socketpair, SockBackend};
use crate::virtio::net::{features, VirtioNet};

const RXQ: usize = 0;
const TXQ: usize = 1;
/// Frames injected per input.
const MAX_FRAMES: usize = 8;
/// How long injected frames may wait for receive buffers.
const RX_GRACE: Duration = Duration::from_millis(20);

/// Bytes waiting to be read on `fd`.
fn pending(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// Reads and discards what the device sent.
fn drain(fd: RawFd, buf: &mut [u8]) {
    // SAFETY: buf is valid for its length.
    while unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) } >= 0 {}
}

/// Input: flags (1: the backend carries virtio-net headers, 2: `mtu=`
/// of the next u16), frame count (at most 8) and `(len: u16, bytes)`
/// frames the host sends to the guest, then the driver program of
/// [`Machine`] (queue 0 receive, 1 transmit).
pub fn virtio_net(data: &[u8]) {
    let mut c = Cursor(data);
    let (Some(flags), Some(mtu), Some(nframes)) = (c.u8(), c.u16(), c.u8()) else {
        return;
    };
    let Ok((dev_fd, host)) = socketpair(None) else {
        return;
    };
    for _ in 0..usize::from(nframes).min(MAX_FRAMES) {
        let Some(len) = c.u16() else { break };
        let f = c.take(len.into());
        // SAFETY: f is valid for its length.
        unsafe {
            libc::send(
                host.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                libc::MSG_DONTWAIT,
            )
        };
    }
    let dev_raw = dev_fd.as_raw_fd();
    let offloads = features::CSUM
        | features::GUEST_CSUM
        | features::HOST_TSO4
        | features::HOST_TSO6
        | features::GUEST_TSO4
        | features::GUEST_TSO6;
    let backend = Arc::new(SockBackend::new(dev_fd, flags & 1 != 0, offloads));
    let mtu = (flags & 2 != 0).then_some(mtu.max(46));
    let dev = VirtioNet::new([0x58, 0x9c, 0xfc, 0, 0, 1], mtu, Some(backend));
    let Some(mut m) = Machine::start(Box::new(dev), &mut c) else {
        return;
    };
    if m.is_active() {
        let mut buf = vec![0u8; 1 << 17];
        m.post_chains(&mut c);
        m.wait_answered(&[TXQ], || drain(host.as_raw_fd(), &mut buf));
        // Receive buffers are used as frames arrive; give the frames a
        // moment to find room (they may never: the guest posted none).
        let t = Instant::now();
        while pending(dev_raw) > 0 && t.elapsed() < RX_GRACE {
            std::thread::sleep(Duration::from_micros(100));
        }
        let _ = m.used(RXQ);
    }
    m.finish();
}
