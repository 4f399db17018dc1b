//! Guest RAM: the named VM's `memory` file mapped MAP_SHARED (so what
//! bhyveload wrote is what bhyve runs), or anonymous memory for a VM that
//! lives only as long as one bhyve process.
//!
//! Regions come from [`MemLayout::regions`]: the low part (guest address
//! 0) at file offset 0, the part above 4 GiB right after it in the file.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bhyve_firmware::{MemLayout, MemRegion};
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap, MmapRegion,
};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory layout is empty")]
    Empty,
    #[error("guest memory part at {gpa:#x} of {len:#x} bytes is invalid")]
    BadPart { gpa: u64, len: u64 },
    #[error("memory file is {have} bytes, the layout needs {need}")]
    FileTooSmall { have: u64, need: u64 },
    #[error("cannot map guest memory: {0}")]
    Map(String),
    #[error("{what} failed: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Checks the regions and returns the file length they need.
fn check_parts(parts: &[MemRegion]) -> Result<u64, MemoryError> {
    if parts.is_empty() {
        return Err(MemoryError::Empty);
    }
    let mut need: u64 = 0;
    for p in parts {
        let bad = MemoryError::BadPart {
            gpa: p.gpa,
            len: p.len,
        };
        let end = match (p.gpa.checked_add(p.len), p.file_offset.checked_add(p.len)) {
            (Some(_), Some(end)) if p.len > 0 && usize::try_from(p.len).is_ok() => end,
            _ => return Err(bad),
        };
        need = need.max(end);
    }
    Ok(need)
}

/// Maps `file` MAP_SHARED, one guest memory region per layout region. The
/// file must cover every region: touching a mapping beyond EOF would
/// raise SIGBUS.
pub fn map_file(file: File, parts: &[MemRegion]) -> Result<GuestMemoryMmap, MemoryError> {
    let need = check_parts(parts)?;
    let have = file
        .metadata()
        .map_err(|source| MemoryError::Os {
            what: "stat memory file",
            source,
        })?
        .len();
    if have < need {
        return Err(MemoryError::FileTooSmall { have, need });
    }
    let file = Arc::new(file);
    let ranges: Vec<_> = parts
        .iter()
        .map(|p| {
            (
                GuestAddress(p.gpa),
                p.len as usize,
                Some(FileOffset::from_arc(Arc::clone(&file), p.file_offset)),
            )
        })
        .collect();
    GuestMemoryMmap::from_ranges_with_files(ranges).map_err(|e| MemoryError::Map(e.to_string()))
}

/// Maps the named VM's memory file for `layout`.
pub fn map_layout_file(file: File, layout: &MemLayout) -> Result<GuestMemoryMmap, MemoryError> {
    map_file(file, &layout.regions())
}

/// Anonymous guest RAM for `layout` (a VM without a name in the store).
pub fn map_layout_anonymous(layout: &MemLayout) -> Result<GuestMemoryMmap, MemoryError> {
    map_anonymous(&layout.regions())
}

/// Anonymous guest RAM with the same region structure as [`map_file`].
pub fn map_anonymous(parts: &[MemRegion]) -> Result<GuestMemoryMmap, MemoryError> {
    check_parts(parts)?;
    let regions = parts
        .iter()
        .map(|p| {
            let m = MmapRegion::new(p.len as usize).map_err(|e| MemoryError::Map(e.to_string()))?;
            GuestRegionMmap::new(m, GuestAddress(p.gpa)).ok_or(MemoryError::BadPart {
                gpa: p.gpa,
                len: p.len,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_regions(regions).map_err(|e| MemoryError::Map(e.to_string()))
}

fn for_each_region(
    mem: &GuestMemoryMmap,
    what: &'static str,
    f: impl Fn(*mut libc::c_void, usize) -> libc::c_int,
) -> Result<(), MemoryError> {
    for r in mem.iter() {
        if f(r.as_ptr().cast(), r.len() as usize) != 0 {
            return Err(MemoryError::Os {
                what,
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Wires guest memory (bhyve -S, bhyveload -S): faults every page in and
/// keeps it resident.
pub fn wire(mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    // SAFETY: each range is a live mapping owned by `mem`.
    for_each_region(mem, "mlock guest memory", |p, l| unsafe {
        libc::mlock(p, l)
    })
}

/// Leaves guest memory out of bhyve's core dumps: bhyve's default, which
/// `memory.guest_in_core` (-C) turns off.
pub fn exclude_from_core(mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    // SAFETY: each range is a live mapping owned by `mem`; MADV_DONTDUMP
    // only changes core-dump behaviour.
    for_each_region(mem, "madvise(MADV_DONTDUMP)", |p, l| unsafe {
        libc::madvise(p, l, libc::MADV_DONTDUMP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;
    use vm_memory::Bytes;

    const GIB: u64 = 1 << 30;

    fn r(gpa: u64, len: u64, file_offset: u64) -> MemRegion {
        MemRegion {
            gpa,
            len,
            file_offset,
        }
    }

    fn scratch_file(tag: &str, len: u64) -> (PathBuf, File) {
        let p = std::env::temp_dir().join(format!("bhyve-mem-{tag}-{}", std::process::id()));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(len).unwrap();
        (p, f)
    }

    #[test]
    fn low_only_round_trip() {
        let (path, f) = scratch_file("low", 1 << 20);
        let mem = map_file(f, &[r(0, 1 << 20, 0)]).unwrap();
        mem.write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        assert!(mem.write_obj(0u8, GuestAddress(1 << 20)).is_err());
        drop(mem);
        let f = File::open(&path).unwrap();
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn high_part_follows_low_part_in_file() {
        // 3 GiB below the hole plus 1 GiB above 4 GiB; sparse, so cheap.
        let (path, f) = scratch_file("high", 4 * GIB);
        let layout = MemLayout::new(4 * GIB).unwrap();
        let parts = layout.regions();
        assert_eq!(parts, [r(0, 3 * GIB, 0), r(4 * GIB, GIB, 3 * GIB)]);
        let mem = map_file(f, &parts).unwrap();
        assert_eq!(mem.num_regions(), 2);
        mem.write_obj(0x11u8, GuestAddress(3 * GIB - 1)).unwrap();
        mem.write_obj(0x22u8, GuestAddress(4 * GIB)).unwrap();
        mem.write_obj(0x33u8, GuestAddress(5 * GIB - 1)).unwrap();
        assert!(mem.write_obj(0u8, GuestAddress(3 * GIB)).is_err(), "hole");
        drop(mem);

        let f = File::open(&path).unwrap();
        let at = |off: u64| {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, off).unwrap();
            b[0]
        };
        assert_eq!(at(3 * GIB - 1), 0x11);
        assert_eq!(at(3 * GIB), 0x22);
        assert_eq!(at(4 * GIB - 1), 0x33);

        // Reopening sees the same bytes at the same guest addresses.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mem = map_file(f, &parts).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(4 * GIB)).unwrap(), 0x22);
        drop(mem);
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn rejects_bad_layouts() {
        let (path, f) = scratch_file("small", 4096);
        assert!(matches!(
            map_file(f, &[r(0, 8192, 0)]),
            Err(MemoryError::FileTooSmall { .. })
        ));
        fs::remove_file(path).unwrap();
        assert!(matches!(map_anonymous(&[]), Err(MemoryError::Empty)));
        assert!(map_anonymous(&[r(0, 0, 0)]).is_err());
        assert!(map_anonymous(&[r(u64::MAX - 10, 4096, 0)]).is_err());
        assert!(map_anonymous(&[r(0, 4096, u64::MAX - 10)]).is_err());
        // Overlapping parts.
        assert!(map_anonymous(&[r(0, 8192, 0), r(4096, 4096, 8192)]).is_err());
    }

    #[test]
    fn anonymous_and_madvise() {
        let mem = map_anonymous(&[r(0, 1 << 20, 0), r(4 * GIB, 1 << 20, 1 << 20)]).unwrap();
        mem.write_obj(7u64, GuestAddress(4 * GIB + 8)).unwrap();
        assert_eq!(mem.read_obj::<u64>(GuestAddress(4 * GIB + 8)).unwrap(), 7);
        exclude_from_core(&mem).unwrap();
        // mlock may exceed RLIMIT_MEMLOCK for unprivileged users; when it
        // works, the memory must still be usable.
        if wire(&mem).is_ok() {
            assert_eq!(mem.read_obj::<u64>(GuestAddress(4 * GIB + 8)).unwrap(), 7);
        }
    }
}
