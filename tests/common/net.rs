//! Network helpers of the NIC tests: a private network namespace with a
//! tap, AF_PACKET capture and injection there, and the frame rule the
//! C test guests (`virtio_net_io`, `e1000_io`) share with the host side.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

pub const ETHERTYPE: u16 = 0x88b5;
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const RX_SEQ0: u32 = 0x1000;
pub const MAX_FRAME: usize = 1514;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The frame rule both sides share (see virtio_net_io.c).
pub fn frame(seq: u32, len: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_le_bytes());
    for i in 18..len as u32 {
        f.push((seq.wrapping_mul(7) + i * 13 + (i >> 8)) as u8);
    }
    f
}

pub fn frame_len(seq: u32, maxlen: usize) -> usize {
    60 + (seq as usize * 331) % (maxlen - 59)
}

pub fn mac_text(m: &[u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// A network namespace with `tap0` up; deleted on drop, whatever happened.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("bhyve-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip (apt-get install iproute2)");
        assert!(ok.success(), "ip netns add {name} failed");
        let ns = Netns { name };
        ns.exec(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        // No IPv6 on the tap: the kernel then sends nothing of its own.
        ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.tap0.disable_ipv6=1"]);
        ns.exec(&["ip", "link", "set", "tap0", "up"]);
        ns
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    pub fn exec(&self, args: &[&str]) {
        let st = self.cmd(args).status().unwrap();
        assert!(st.success(), "{args:?} in {} failed: {st}", self.name);
    }

    /// An AF_PACKET socket on `ifname` inside the namespace: made on a
    /// thread that entered it (setns changes only the calling thread),
    /// then usable from anywhere.
    pub fn packet_socket(&self, ifname: &str) -> OwnedFd {
        let path = format!("/var/run/netns/{}", self.name);
        let ifname = std::ffi::CString::new(ifname).unwrap();
        std::thread::spawn(move || -> std::io::Result<OwnedFd> {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: a valid namespace descriptor; affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2).
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto.into()) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a new descriptor we own.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a valid C string.
            let index = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
            if index == 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: sockaddr_ll is plain data.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto;
            sa.sll_ifindex = index as i32;
            // SAFETY: sa is a valid sockaddr_ll of the given size.
            let r = unsafe {
                libc::bind(
                    fd,
                    (&sa as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            Ok(sock)
        })
        .join()
        .unwrap()
        .expect("AF_PACKET socket in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A frame from the socket, or None after its 100 ms timeout.
pub fn recv_frame(sock: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    (n > 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

pub fn send_frame(sock: &OwnedFd, f: &[u8]) {
    // SAFETY: f is readable for its length.
    let n = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
    assert_eq!(
        n,
        f.len() as isize,
        "send on the tap: {}",
        std::io::Error::last_os_error()
    );
}
