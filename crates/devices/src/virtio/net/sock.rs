//! A [`NetBackend`] over one end of a SOCK_DGRAM socketpair, whose
//! message boundaries are frames: the NIC unit tests and fuzz targets
//! hold the other end (as the host's side of a tap).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::NetBackend;

pub struct SockBackend {
    fd: OwnedFd,
    vnet: bool,
    offloads: u64,
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Two connected datagram sockets; `sndbuf` bytes of send buffer on
/// each when given (room for large frames).
pub fn socketpair(sndbuf: Option<u32>) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned here.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if let Some(sz) = sndbuf {
        let sz = libc::c_int::try_from(sz).unwrap_or(libc::c_int::MAX);
        for fd in fds {
            // SAFETY: sets an int option from a live int.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&sz as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
    Ok(pair)
}

impl SockBackend {
    /// A backend over `fd` whose frames carry a virtio-net header when
    /// `vnet`, offering `offloads` (`features::*`).
    pub fn new(fd: OwnedFd, vnet: bool, offloads: u64) -> SockBackend {
        SockBackend { fd, vnet, offloads }
    }

    /// A frame, or None when none came within `d`.
    pub fn recv_timeout(&self, d: Duration) -> Option<Vec<u8>> {
        let end = Instant::now() + d;
        let mut b = vec![0u8; 70000];
        while Instant::now() < end {
            if let Ok(n) = self.recv(&mut b) {
                b.truncate(n);
                return Some(b);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }
}

impl NetBackend for SockBackend {
    fn has_vnet_hdr(&self) -> bool {
        self.vnet
    }
    fn offload_features(&self) -> u64 {
        self.offloads
    }
    fn set_offloads(&self, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for its length.
        cvt(unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        })
    }
    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for its length.
        cvt(unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        })
    }
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
