//! A host terminal device (`/dev/pts/N`, `/dev/ttyS0`, ...), as bhyve's
//! uart_tty_backend: opened read-write without becoming our controlling
//! terminal, non-blocking, and put in raw mode (restored when the backend
//! stops; bhyve leaves it raw).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::pump::Host;
use crate::{sys, BackendError};

pub(crate) struct TtyHost {
    path: String,
    fd: OwnedFd,
    orig: libc::termios,
    input_open: bool,
    output_open: bool,
}

impl TtyHost {
    pub(crate) fn open(path: &str) -> Result<Self, BackendError> {
        let open_err = |source| BackendError::Open {
            path: path.to_owned(),
            source,
        };
        let c = CString::new(path).map_err(|_| open_err(io::ErrorKind::InvalidInput.into()))?;
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: c is a valid NUL-terminated path.
        let raw = unsafe { libc::open(c.as_ptr(), flags) };
        if raw < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if !sys::isatty(fd.as_raw_fd()) {
            return Err(BackendError::NotATty(path.to_owned()));
        }
        let orig = sys::tcgetattr(fd.as_raw_fd()).map_err(open_err)?;
        sys::tcsetattr(fd.as_raw_fd(), &sys::make_raw(&orig)).map_err(open_err)?;
        Ok(TtyHost {
            path: path.to_owned(),
            fd,
            orig,
            input_open: true,
            output_open: true,
        })
    }
}

impl Drop for TtyHost {
    fn drop(&mut self) {
        let _ = sys::tcsetattr(self.fd.as_raw_fd(), &self.orig);
    }
}

impl Host for TtyHost {
    fn input_fd(&self) -> Option<RawFd> {
        self.input_open.then(|| self.fd.as_raw_fd())
    }

    fn output_fd(&self) -> Option<RawFd> {
        self.output_open.then(|| self.fd.as_raw_fd())
    }

    fn on_input_closed(&mut self) {
        log::debug!("{}: input closed", self.path);
        self.input_open = false;
    }

    fn on_output_error(&mut self, err: &io::Error) {
        log::warn!(
            "{}: {err}; guest output to it is discarded from now on",
            self.path
        );
        self.output_open = false;
    }
}

#[cfg(test)]
mod tests {
    use crate::testpty::Pty;
    use crate::testutil::{guest_read_all, guest_write_all, read_exact_timeout, uart};
    use crate::{open_char_backend, sys};

    #[test]
    fn pty_both_ways_raw_then_restored() {
        let pty = Pty::open();
        let before = sys::tcgetattr(pty.slave()).unwrap();
        let backend = open_char_backend(&pty.path).unwrap();
        let raw = sys::tcgetattr(pty.slave()).unwrap();
        assert_eq!(raw.c_lflag & (libc::ICANON | libc::ECHO), 0, "raw mode");
        assert_eq!(raw.c_oflag & libc::OPOST, 0, "no \\n → \\r\\n rewriting");

        let (dev, _irq) = uart();
        let handle = backend.attach(dev.clone()).unwrap();
        guest_write_all(&dev, b"login: \n");
        assert_eq!(read_exact_timeout(pty.master(), 8), b"login: \n");
        sys::write(pty.master(), b"root\r").unwrap();
        assert_eq!(
            guest_read_all(&dev, 5),
            b"root\r",
            "no echo, no line editing"
        );
        drop(handle);
        let after = sys::tcgetattr(pty.slave()).unwrap();
        assert_eq!(after.c_lflag, before.c_lflag);
        assert_eq!(after.c_oflag, before.c_oflag);
    }

    #[test]
    fn open_errors() {
        let e = open_char_backend("/dev/pts/does-not-exist").err().unwrap();
        assert_eq!(
            e.to_string(),
            "/dev/pts/does-not-exist: No such file or directory (os error 2)"
        );
        let e = open_char_backend("/dev/null").err().unwrap();
        assert_eq!(e.to_string(), "/dev/null: not a terminal");
    }
}
