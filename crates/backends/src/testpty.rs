//! A pseudo-terminal pair for tests.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub path: String,
}

impl Pty {
    pub fn open() -> Pty {
        // SAFETY: plain libc calls on descriptors checked right after.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = OwnedFd::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned();
            let s = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            assert!(s >= 0, "open {path}: {}", std::io::Error::last_os_error());
            Pty {
                master,
                slave: OwnedFd::from_raw_fd(s),
                path,
            }
        }
    }

    pub fn slave(&self) -> RawFd {
        self.slave.as_raw_fd()
    }

    pub fn master(&self) -> RawFd {
        self.master.as_raw_fd()
    }
}
