//! Linux tap interfaces through /dev/net/tun: bhyve's `tapN` backend.
//!
//! The interface is attached (created if missing, as /dev/net/tun does)
//! with IFF_TAP | IFF_NO_PI, and with IFF_VNET_HDR when the kernel has
//! it: frames then carry a 12-byte virtio-net header both ways, which
//! is what lets checksum and segmentation offloads pass through. The
//! descriptor is non-blocking; the device's workers poll it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use bhyve_devices::virtio::net::{features, NetBackend, VNET_HDR_LEN};

use super::NetBackendError;

// <linux/if_tun.h>
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETFEATURES: libc::c_ulong = 0x8004_54cf;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;
const TUN_F_CSUM: u32 = 0x01;
const TUN_F_TSO4: u32 = 0x02;
const TUN_F_TSO6: u32 = 0x04;
const TUN_F_TSO_ECN: u32 = 0x08;
const TUN_F_UFO: u32 = 0x10;

/// Interface names hold 15 bytes and a NUL.
const IFNAMSIZ: usize = 16;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags in
/// the union (40 bytes in all on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: u16,
    _pad: [u8; 22],
}

pub struct Tap {
    file: File,
    name: String,
    vnet: bool,
    offloads: u64,
}

fn ioctl_int(fd: RawFd, req: libc::c_ulong, arg: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: every caller passes a pointer to a live object of the size
    // the request reads or writes.
    if unsafe { libc::ioctl(fd, req, arg) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// The TUN_F_* flags for device offload features `f` (what the tap may
/// hand us, i.e. what the driver takes).
fn tun_flags(f: u64) -> u32 {
    if f & features::GUEST_CSUM == 0 {
        return 0;
    }
    let mut t = TUN_F_CSUM;
    for (bit, flag) in [
        (features::GUEST_TSO4, TUN_F_TSO4),
        (features::GUEST_TSO6, TUN_F_TSO6),
        (features::GUEST_ECN, TUN_F_TSO_ECN),
        (features::GUEST_UFO, TUN_F_UFO),
    ] {
        if f & bit != 0 {
            t |= flag;
        }
    }
    t
}

impl Tap {
    /// Attaches to (or creates) tap interface `name`.
    pub fn open(name: &str) -> Result<Tap, NetBackendError> {
        if !valid_name(name) {
            return Err(NetBackendError::BadName(name.to_owned()));
        }
        let io = |what: String| move |source| NetBackendError::Io { what, source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(io("/dev/net/tun".into()))?;
        let fd = file.as_raw_fd();
        let mut kernel_features: u32 = 0;
        let vnet = ioctl_int(
            fd,
            TUNGETFEATURES,
            (&mut kernel_features as *mut u32).cast(),
        )
        .is_ok()
            && kernel_features & u32::from(IFF_VNET_HDR) != 0;
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | if vnet { IFF_VNET_HDR } else { 0 },
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        ioctl_int(fd, TUNSETIFF, (&mut req as *mut IfReq).cast())
            .map_err(io(format!("tap {name}")))?;
        let mut tap = Tap {
            file,
            name: name.to_owned(),
            vnet: false,
            offloads: 0,
        };
        if vnet {
            let mut sz = VNET_HDR_LEN as libc::c_int;
            if ioctl_int(fd, TUNSETVNETHDRSZ, (&mut sz as *mut libc::c_int).cast()).is_ok() {
                tap.vnet = true;
                tap.offloads = tap.probe_offloads();
            }
        }
        log::debug!(
            "tap {name}: vnet header {}, offloads {:#x}",
            tap.vnet,
            tap.offloads
        );
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offloads this kernel's tap accepts (UFO was removed and
    /// re-added over the years: ask), then none until a driver says.
    fn probe_offloads(&self) -> u64 {
        let tso = features::GUEST_CSUM
            | features::GUEST_TSO4
            | features::GUEST_TSO6
            | features::GUEST_ECN;
        let mut f = 0;
        if self.set_tun_flags(tun_flags(tso)).is_ok() {
            f = tso
                | features::CSUM
                | features::HOST_TSO4
                | features::HOST_TSO6
                | features::HOST_ECN;
            if self
                .set_tun_flags(tun_flags(tso | features::GUEST_UFO))
                .is_ok()
            {
                f |= features::GUEST_UFO | features::HOST_UFO;
            }
        } else if self.set_tun_flags(TUN_F_CSUM).is_ok() {
            f = features::CSUM | features::GUEST_CSUM;
        }
        let _ = self.set_tun_flags(0);
        f
    }

    fn set_tun_flags(&self, flags: u32) -> io::Result<()> {
        // TUNSETOFFLOAD takes the flags as the argument value itself.
        ioctl_int(
            self.file.as_raw_fd(),
            TUNSETOFFLOAD,
            flags as usize as *mut libc::c_void,
        )
    }
}

impl NetBackend for Tap {
    fn has_vnet_hdr(&self) -> bool {
        self.vnet
    }

    fn offload_features(&self) -> u64 {
        self.offloads
    }

    fn set_offloads(&self, features: u64) -> io::Result<()> {
        if !self.vnet {
            return Ok(());
        }
        self.set_tun_flags(tun_flags(features & self.offloads))
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for frame.len() bytes.
        let n = unsafe { libc::write(self.file.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn poll_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn offload_features_map_to_tun_flags() {
        assert_eq!(tun_flags(features::GUEST_TSO4), 0, "TSO needs GUEST_CSUM");
        assert_eq!(
            tun_flags(features::GUEST_CSUM | features::GUEST_TSO4 | features::GUEST_TSO6),
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        );
    }

    #[test]
    fn a_tap_is_created_non_blocking_with_a_vnet_header_and_removed_on_close() {
        if !root() {
            eprintln!("skipped: creating a tap needs root (CAP_NET_ADMIN)");
            return;
        }
        let name = format!("bhtu{}", std::process::id() % 100_000);
        let sys = Path::new("/sys/class/net").join(&name);
        let tap = Tap::open(&name).unwrap();
        assert_eq!(tap.name(), name);
        assert!(sys.exists(), "{name} was not created");
        assert!(tap.has_vnet_hdr(), "Linux taps have IFF_VNET_HDR");
        let f = tap.offload_features();
        assert_ne!(f & features::HOST_TSO4, 0, "{f:#x}");
        tap.set_offloads(f).unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(
            tap.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // Attached twice: the kernel refuses, and says so.
        let e = Tap::open(&name).err().unwrap().to_string();
        assert!(e.starts_with(&format!("tap {name}: ")), "{e}");
        drop(tap);
        assert!(!sys.exists(), "{name} outlived its descriptor");
    }
}
