//! `stdio`: the guest's console on bhyve's own stdin/stdout.
//!
//! bhyve allows it for one device only. When stdin is a terminal it goes
//! raw (so ^C reaches the guest) until the backend stops or the process
//! exits; see [`crate::restore_terminal`] for the other ways out. The fds
//! are left blocking (they are usually shared with the parent shell), so
//! output is written in small pieces after POLLOUT.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::pump::Host;
use crate::terminal::{set_raw_mode, TerminalGuard};
use crate::BackendError;

static STDIO_CLAIMED: AtomicBool = AtomicBool::new(false);

/// Ownership of stdin/stdout for one device.
pub(crate) struct StdioClaim(());

impl StdioClaim {
    pub(crate) fn take() -> Result<Self, BackendError> {
        if STDIO_CLAIMED.swap(true, Ordering::AcqRel) {
            return Err(BackendError::StdioInUse);
        }
        Ok(StdioClaim(()))
    }
}

impl Drop for StdioClaim {
    fn drop(&mut self) {
        STDIO_CLAIMED.store(false, Ordering::Release);
    }
}

pub(crate) struct StdioHost {
    input: Option<RawFd>,
    output: Option<RawFd>,
    // Dropped after the pump finished flushing: terminal restored last.
    _raw: Option<TerminalGuard>,
    _claim: Option<StdioClaim>,
}

impl StdioHost {
    /// The real stdin/stdout; makes stdin raw if it is a terminal.
    pub(crate) fn new(claim: StdioClaim) -> Result<Self, BackendError> {
        let raw = set_raw_mode(libc::STDIN_FILENO).map_err(|source| BackendError::Io {
            what: "stdin: cannot set raw mode",
            source,
        })?;
        Ok(StdioHost {
            input: Some(libc::STDIN_FILENO),
            output: Some(libc::STDOUT_FILENO),
            _raw: raw,
            _claim: Some(claim),
        })
    }

    /// Arbitrary fds, left as they are (tests use pipes).
    #[cfg(test)]
    pub(crate) fn with_fds(input: RawFd, output: RawFd) -> Self {
        StdioHost {
            input: Some(input),
            output: Some(output),
            _raw: None,
            _claim: None,
        }
    }
}

impl Host for StdioHost {
    fn input_fd(&self) -> Option<RawFd> {
        self.input
    }

    fn output_fd(&self) -> Option<RawFd> {
        self.output
    }

    fn on_input_closed(&mut self) {
        // No more input; the guest keeps its output.
        self.input = None;
    }

    fn on_output_error(&mut self, err: &io::Error) {
        log::warn!("stdout: {err}; guest console output is discarded from now on");
        self.output = None;
    }

    fn write_chunk(&self) -> usize {
        256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{guest_read_all, guest_write_all, uart};
    use crate::CharBackend;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut p = [0; 2];
        // SAFETY: p has room for two fds, owned right after.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh fds from pipe2.
        unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
    }

    #[test]
    fn pipes_both_ways_and_eof() {
        let (in_r, in_w) = pipe();
        let (out_r, out_w) = pipe();
        let (dev, _irq) = uart();
        let handle =
            CharBackend::from_host(StdioHost::with_fds(in_r.as_raw_fd(), out_w.as_raw_fd()))
                .attach(dev.clone())
                .unwrap();
        guest_write_all(&dev, b"hello from the guest\r\n");
        let mut got = vec![0u8; 22];
        let mut f = std::fs::File::from(out_r);
        std::io::Read::read_exact(&mut f, &mut got).unwrap();
        assert_eq!(&got, b"hello from the guest\r\n");

        crate::sys::write(in_w.as_raw_fd(), b"typed").unwrap();
        drop(in_w); // EOF on stdin must not disturb output
        assert_eq!(guest_read_all(&dev, 5), b"typed");
        guest_write_all(&dev, b"still here");
        drop(handle); // flushes what the guest wrote
        let mut rest = Vec::new();
        drop(out_w);
        std::io::Read::read_to_end(&mut f, &mut rest).unwrap();
        assert_eq!(rest, b"still here");
    }

    #[test]
    fn only_one_stdio() {
        let a = StdioClaim::take().unwrap();
        assert!(matches!(StdioClaim::take(), Err(BackendError::StdioInUse)));
        drop(a);
        let _b = StdioClaim::take().unwrap();
    }

    /// Both directions at once through pipes far smaller than the traffic,
    /// with a slow reader on each side: every byte arrives, in order.
    #[test]
    fn slow_ends_lose_nothing() {
        const N: usize = 300_000;
        let (in_r, in_w) = pipe();
        let (out_r, out_w) = pipe();
        let (dev, _irq) = uart();
        let handle =
            CharBackend::from_host(StdioHost::with_fds(in_r.as_raw_fd(), out_w.as_raw_fd()))
                .attach(dev.clone())
                .unwrap();
        let pattern = |k: usize| (k % 241) as u8;
        let host_reader = std::thread::spawn(move || {
            let mut f = std::fs::File::from(out_r);
            let mut got = vec![0u8; N];
            for chunk in got.chunks_mut(1000) {
                std::io::Read::read_exact(&mut f, chunk).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
            got
        });
        let host_writer = std::thread::spawn(move || {
            let data: Vec<u8> = (0..N / 10).map(pattern).collect();
            let mut f = std::fs::File::from(in_w);
            std::io::Write::write_all(&mut f, &data).unwrap();
        });
        let out: Vec<u8> = (0..N).map(pattern).collect();
        let mut input = Vec::new();
        for chunk in out.chunks(10_000) {
            guest_write_all(&dev, chunk);
            input.extend(guest_read_all(&dev, 1000));
        }
        assert_eq!(input, (0..N / 10).map(pattern).collect::<Vec<_>>());
        host_writer.join().unwrap();
        let got = host_reader.join().unwrap();
        assert!(got == out, "output corrupted");
        drop(handle);
        assert_eq!(dev.lock().unwrap().tx_overruns(), 0);
    }
}
