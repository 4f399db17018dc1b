//! A scripted network backend for the NIC unit tests (virtio-net and
//! e1000): each test picks how receives and sends behave and reads back
//! how often the device called them.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use vmm_sys_util::eventfd::EventFd;

use crate::virtio::net::NetBackend;

/// What every `recv` gives.
enum Recv {
    /// No frame is waiting (`WouldBlock`).
    Nothing,
    /// The backend failed for good.
    Fail(i32),
    /// `len` bytes: too short for the header promised, or 0 at end of file.
    Short(usize),
}

/// Called on every send with how many sends there have been, this one
/// included.
type SendHook = Box<dyn Fn(usize) + Send + Sync>;

pub(crate) struct FakeBackend {
    vnet: bool,
    recv: Recv,
    send_err: Option<i32>,
    on_send: OnceLock<SendHook>,
    /// Never readable unless the backend is made ready forever: an
    /// eventfd left at 0 polls writable only, as a quiet socket does.
    fd: EventFd,
    reads: AtomicUsize,
    sends: AtomicUsize,
}

impl FakeBackend {
    /// Takes every frame sent; never has one to receive.
    pub fn new() -> Self {
        FakeBackend {
            vnet: false,
            recv: Recv::Nothing,
            send_err: None,
            on_send: OnceLock::new(),
            fd: EventFd::new(0).unwrap(),
            reads: AtomicUsize::new(0),
            sends: AtomicUsize::new(0),
        }
    }

    /// Failed for good (every call gives `errno`) while its descriptor
    /// polls ready forever: a tap whose interface the host deleted.
    pub fn failed(errno: i32) -> Self {
        let be = FakeBackend {
            recv: Recv::Fail(errno),
            send_err: Some(errno),
            ..FakeBackend::new()
        };
        be.fd.write(1).unwrap();
        be
    }

    /// Promises a virtio-net header, polls readable forever, and every
    /// read gives `len` bytes, fewer than the header: 0 at end of file (a
    /// stream whose peer went away), or garbage. Sends fail (EPIPE).
    pub fn short_reads(len: usize) -> Self {
        let be = FakeBackend {
            vnet: true,
            recv: Recv::Short(len),
            send_err: Some(libc::EPIPE),
            ..FakeBackend::new()
        };
        be.fd.write(1).unwrap();
        be
    }

    /// Runs `hook` on every send (on the sending worker's thread, as a
    /// vCPU would race it); settable once, after the device holds the
    /// backend.
    pub fn on_send(&self, hook: impl Fn(usize) + Send + Sync + 'static) {
        assert!(
            self.on_send.set(Box::new(hook)).is_ok(),
            "send hook set twice"
        );
    }

    /// `recv` calls so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// `send` calls so far, failed ones included.
    pub fn sends(&self) -> usize {
        self.sends.load(Ordering::SeqCst)
    }
}

impl NetBackend for FakeBackend {
    fn has_vnet_hdr(&self) -> bool {
        self.vnet
    }
    fn offload_features(&self) -> u64 {
        0
    }
    fn set_offloads(&self, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn recv(&self, _: &mut [u8]) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        match self.recv {
            Recv::Nothing => Err(io::ErrorKind::WouldBlock.into()),
            Recv::Fail(errno) => Err(io::Error::from_raw_os_error(errno)),
            Recv::Short(len) => Ok(len),
        }
    }
    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(hook) = self.on_send.get() {
            hook(n);
        }
        match self.send_err {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(frame.len()),
        }
    }
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_behaviours() {
        let mut buf = [0u8; 16];
        let quiet = FakeBackend::new();
        assert_eq!(
            quiet.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(quiet.send(&buf[..7]).unwrap(), 7);
        assert_eq!((quiet.reads(), quiet.sends()), (1, 1));

        let broken = FakeBackend::failed(libc::EBADFD);
        assert_eq!(
            broken.send(&buf).unwrap_err().raw_os_error(),
            Some(libc::EBADFD)
        );
        assert_eq!(
            broken.recv(&mut buf).unwrap_err().raw_os_error(),
            Some(libc::EBADFD)
        );

        let eof = FakeBackend::short_reads(5);
        assert!(eof.has_vnet_hdr());
        assert_eq!(eof.recv(&mut buf).unwrap(), 5);

        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        quiet.on_send(move |n| s.store(n, Ordering::SeqCst));
        quiet.send(&buf).unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 2, "the hook sees the count");
    }
}
