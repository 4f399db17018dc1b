//! The I/O thread of a char backend: moves bytes between a host endpoint
//! and a [`CharFrontend`] with poll(2), never losing a byte to a slow side.
//!
//! Output: bytes taken from the frontend wait here until the host fd takes
//! them; only then is more taken, so a slow host leaves the frontend's
//! buffer full (the guest sees a busy transmitter). Input: bytes read from
//! the host wait here until the frontend accepts them; the fd is not read
//! meanwhile. The frontend's notifier writes an eventfd that wakes poll.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bhyve_devices::CharFrontend;

use crate::sys::{self, EventFd};

const BUF_SIZE: usize = 4096;
/// How long shutdown keeps writing buffered output to a slow host.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A host endpoint as the pump sees it.
pub(crate) trait Host: Send {
    /// Where input comes from now, if anywhere.
    fn input_fd(&self) -> Option<RawFd>;
    /// Where output goes now; `None` discards it (bhyve drops output with
    /// nothing connected).
    fn output_fd(&self) -> Option<RawFd>;
    /// Another fd to watch for readability (a listening socket).
    fn extra_fd(&self) -> Option<RawFd> {
        None
    }
    fn on_extra_ready(&mut self) {}
    /// The input side reached end of file or failed.
    fn on_input_closed(&mut self);
    /// Writing failed for good (peer gone, broken pipe).
    fn on_output_error(&mut self, err: &io::Error);
    fn write(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        sys::write(fd, buf)
    }
    /// Largest write attempted at once; small for blocking fds, which may
    /// only have a little room after POLLOUT.
    fn write_chunk(&self) -> usize {
        BUF_SIZE
    }
}

pub(crate) struct Pump<H: Host> {
    pub front: Arc<dyn CharFrontend>,
    pub host: H,
    pub wake: Arc<EventFd>,
    pub stop: Arc<EventFd>,
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl<H: Host> Pump<H> {
    pub(crate) fn run(mut self) {
        let mut out = vec![0u8; BUF_SIZE];
        let (mut out_pos, mut out_end) = (0usize, 0usize);
        let mut inp = vec![0u8; BUF_SIZE];
        let (mut in_pos, mut in_end) = (0usize, 0usize);
        loop {
            if self.host.output_fd().is_none() {
                out_pos = 0;
                out_end = 0;
                while self.front.take_output(&mut out) > 0 {}
            } else if out_pos == out_end {
                out_pos = 0;
                out_end = self.front.take_output(&mut out);
            }
            if in_pos < in_end {
                in_pos += self.front.give_input(&inp[in_pos..in_end]);
            }

            let mut fds = vec![
                pollfd(self.stop.fd(), libc::POLLIN),
                pollfd(self.wake.fd(), libc::POLLIN),
            ];
            let rfd = self.host.input_fd().filter(|_| in_pos == in_end);
            let wfd = self.host.output_fd().filter(|_| out_pos < out_end);
            let xfd = self.host.extra_fd();
            let mut slot = |fd: Option<RawFd>, events| {
                fd.map(|fd| {
                    fds.push(pollfd(fd, events));
                    fds.len() - 1
                })
            };
            let (ri, wi, xi) = (
                slot(rfd, libc::POLLIN),
                slot(wfd, libc::POLLOUT),
                slot(xfd, libc::POLLIN),
            );
            if let Err(e) = sys::poll(&mut fds, -1) {
                log::error!("char backend: poll: {e}");
                break;
            }
            let ready = |i: Option<usize>| i.is_some_and(|i| fds[i].revents != 0);
            if fds[0].revents != 0 {
                break;
            }
            if fds[1].revents != 0 {
                self.wake.clear();
            }
            if let (Some(fd), true) = (rfd, ready(ri)) {
                match sys::read(fd, &mut inp) {
                    Ok(0) => self.host.on_input_closed(),
                    Ok(n) => (in_pos, in_end) = (0, n),
                    Err(e) if would_block(&e) => {}
                    Err(e) => {
                        log::debug!("char backend: read: {e}");
                        self.host.on_input_closed();
                    }
                }
            }
            if let (Some(fd), true) = (wfd, ready(wi)) {
                let end = out_end.min(out_pos + self.host.write_chunk());
                match self.host.write(fd, &out[out_pos..end]) {
                    Ok(n) => out_pos += n,
                    Err(e) if would_block(&e) => {}
                    Err(e) => {
                        self.host.on_output_error(&e);
                        (out_pos, out_end) = (0, 0);
                    }
                }
            }
            if ready(xi) {
                self.host.on_extra_ready();
            }
        }
        self.flush(&mut out, out_pos, out_end);
        self.front.set_notifier(None);
    }

    /// Delivers what the guest already wrote before the backend goes away
    /// (a guest printing and then exiting must be seen), within a deadline.
    fn flush(&mut self, out: &mut [u8], mut pos: usize, mut end: usize) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            let Some(fd) = self.host.output_fd() else {
                return;
            };
            if pos == end {
                pos = 0;
                end = self.front.take_output(out);
                if end == 0 {
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("char backend: output still pending at shutdown was dropped");
                return;
            }
            let mut fds = [pollfd(fd, libc::POLLOUT)];
            if sys::poll(&mut fds, left.as_millis().max(1) as libc::c_int).unwrap_or(0) == 0 {
                continue;
            }
            let stop = end.min(pos + self.host.write_chunk());
            match self.host.write(fd, &out[pos..stop]) {
                Ok(n) => pos += n,
                Err(e) if would_block(&e) => {}
                Err(_) => return,
            }
        }
    }
}
