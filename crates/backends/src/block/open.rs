//! Opening a backing file or block device with bhyve's block-device
//! options, and what it can do.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use bhyve_devices::blockif::BlockInfo;

use super::BlockError;

/// bhyve(8)'s block-device-options (`path[,nocache][,direct|sync][,ro]
/// [,sectorsize=l[/p]][,nodelete]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockOptions {
    pub path: String,
    /// `ro`: open read-only (bhyve also falls back to read-only when a
    /// read-write open fails).
    pub read_only: bool,
    /// `nocache`: O_DIRECT.
    pub nocache: bool,
    /// `direct` or `sync`: O_SYNC.
    pub sync: bool,
    /// `sectorsize=logical[/physical]` as given (validated at open).
    pub sector_size: Option<(u32, u32)>,
    /// `nodelete`: no discard.
    pub nodelete: bool,
}

/// Parses `logical[/physical]` as bhyve does (decimal; the physical size
/// defaults to the logical one). Range checks happen at open.
pub fn parse_sectorsize(s: &str) -> Result<(u32, u32), BlockError> {
    let bad = || BlockError::BadSectorSize(s.to_owned());
    let num = |t: &str| -> Result<u32, BlockError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    match s.split_once('/') {
        None => {
            let l = num(s)?;
            Ok((l, l))
        }
        Some((l, p)) => Ok((num(l)?, num(p)?)),
    }
}

// <linux/fs.h> ioctls (x86_64/aarch64 encodings).
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKALIGNOFF: libc::c_ulong = 0x127a;
const BLKPBSZGET: libc::c_ulong = 0x127b;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
pub(super) const BLKDISCARD: libc::c_ulong = 0x1277;
pub(super) const BLKZEROOUT: libc::c_ulong = 0x127f;

/// An opened backing store.
pub(super) struct Opened {
    pub fd: OwnedFd,
    pub is_blk: bool,
    pub info: BlockInfo,
    /// The device's own logical sector size (O_DIRECT alignment floor).
    pub dev_sector: u32,
}

fn ioctl_int(fd: &OwnedFd, req: libc::c_ulong) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these ioctls write one int to the pointer we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut v as *mut libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

pub(super) fn blk_size(fd: &OwnedFd) -> io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64 as _, &mut v as *mut u64) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

pub(super) fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live stat for fstat to fill.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn open_raw(path: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; the fd is checked, then owned.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the kernel discards on this block device (sysfs says a
/// non-zero discard_max_bytes).
fn blk_can_discard(st: &libc::stat) -> bool {
    let (maj, min) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    std::fs::read_to_string(format!(
        "/sys/dev/block/{maj}:{min}/queue/discard_max_bytes"
    ))
    .ok()
    .and_then(|s| s.trim().parse::<u64>().ok())
    .is_some_and(|n| n > 0)
}

pub(super) fn open(opts: &BlockOptions) -> Result<Opened, BlockError> {
    let open_err = |source| BlockError::Open {
        path: opts.path.clone(),
        source,
    };
    let cpath = CString::new(opts.path.as_bytes())
        .map_err(|_| open_err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let mut extra = 0;
    if opts.nocache {
        extra |= libc::O_DIRECT;
    }
    if opts.sync {
        extra |= libc::O_SYNC;
    }
    let mut ro = opts.read_only;
    let fd = if ro {
        open_raw(&cpath, libc::O_RDONLY | extra)
    } else {
        // As bhyve: a read-write failure falls back to read-only.
        open_raw(&cpath, libc::O_RDWR | extra).or_else(|_| {
            ro = true;
            open_raw(&cpath, libc::O_RDONLY | extra)
        })
    }
    .map_err(open_err)?;
    let st = fstat(&fd).map_err(|source| BlockError::Stat {
        path: opts.path.clone(),
        source,
    })?;
    let fmt = st.st_mode & libc::S_IFMT;
    let (is_blk, size, mut sectsz, mut psectsz, mut psectoff, candelete);
    if fmt == libc::S_IFBLK {
        let dev = |source| BlockError::DeviceSize { source };
        is_blk = true;
        size = blk_size(&fd).map_err(dev)?;
        sectsz = ioctl_int(&fd, BLKSSZGET).map_err(dev)?.max(512) as u32;
        psectsz = ioctl_int(&fd, BLKPBSZGET).unwrap_or(0).max(0) as u32;
        psectoff = ioctl_int(&fd, BLKALIGNOFF).unwrap_or(0).max(0) as u32;
        candelete = blk_can_discard(&st);
    } else if fmt == libc::S_IFREG {
        is_blk = false;
        size = st.st_size.max(0) as u64;
        sectsz = 512;
        psectsz = st.st_blksize.max(0) as u32;
        psectoff = 0;
        // Hole punching is the file system's business: one that cannot
        // answers EOPNOTSUPP, which the guest sees as "unsupported".
        candelete = true;
    } else {
        return Err(BlockError::NotADisk(opts.path.clone()));
    }
    let dev_sector = sectsz;
    if let Some((ss, ps)) = opts.sector_size {
        if !ss.is_power_of_two() || !ps.is_power_of_two() || ss < 512 || ss > ps {
            return Err(BlockError::SectorSizeRange(ss, ps));
        }
        if is_blk && (ss < sectsz || ss % sectsz != 0) {
            return Err(BlockError::SectorSizeIncompatible(ss, sectsz));
        }
        sectsz = ss;
        psectsz = ps;
        psectoff = 0;
    }
    Ok(Opened {
        fd,
        is_blk,
        dev_sector,
        info: BlockInfo {
            size,
            sector_size: sectsz,
            physical_sector_size: psectsz,
            physical_sector_offset: psectoff,
            read_only: ro,
            can_delete: candelete && !opts.nodelete && !ro,
        },
    })
}

/// bhyve's default disk serial: "BHYVE-" and the first six bytes of the
/// MD5 of the path, in hex (virtio-blk GET_ID, AHCI IDENTIFY).
pub fn default_serial(path: &str) -> String {
    let d = md5::compute(path.as_bytes());
    format!(
        "BHYVE-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}",
        d[0], d[1], d[2], d[3], d[4], d[5]
    )
}
