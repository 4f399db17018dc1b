//! Linux loaders: detect the kernel's format and boot it the way its
//! format wants.
//!
//! * bzImage with a 64-bit entry point → Linux's 64-bit boot protocol
//!   ([`bzimage`]): boot_params zero page, long mode, identity paging.
//! * ELF `vmlinux` (or any ELF) with a `XEN_ELFNOTE_PHYS32_ENTRY` note →
//!   the PVH boot ABI ([`pvh`]): hvm_start_info, 32-bit protected mode.
//!
//! Boot structures live at fixed low addresses, see [`bootmem`].

pub mod bootmem;
pub mod bzimage;
pub mod pvh;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use vm_memory::GuestMemoryBackend;

use crate::entry::EntryState;
use crate::layout::MemLayout;

/// Why a kernel could not be loaded. Messages do not name the file:
/// callers print `"<path>: <error>"`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a Linux kernel (no bzImage header, no ELF PVH note)")]
    NotLinux,
    #[error("ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)")]
    NoPvhNote,
    #[error("unsupported bzImage: {0}")]
    UnsupportedBzImage(String),
    #[error("invalid ELF kernel: {0}")]
    BadElf(String),
    #[error("kernel does not fit in guest memory: it needs {start:#x}..{end:#x}, low memory ends at {lowmem:#x}")]
    KernelTooBig { start: u64, end: u64, lowmem: u64 },
    #[error(
        "initrd of {size} bytes does not fit in guest memory ({avail} bytes free above the kernel)"
    )]
    InitrdTooBig { size: u64, avail: u64 },
    #[error("kernel command line is too long ({len} bytes, at most {max})")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("reading the {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("loading the kernel: {0}")]
    Loader(#[from] linux_loader::loader::Error),
    #[error("guest memory: {0}")]
    GuestMemory(String),
}

/// Loads a Linux kernel (bzImage or PVH ELF), its initrd and command line
/// into `mem`, laid out as `layout`, and returns how vCPU 0 starts.
pub fn load_linux<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemLayout,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
) -> Result<EntryState, LoadError> {
    let io = |e| LoadError::Io {
        what: "kernel",
        source: e,
    };
    let mut head = [0u8; 0x400];
    kernel.seek(SeekFrom::Start(0)).map_err(io)?;
    let n = read_up_to(kernel, &mut head).map_err(io)?;
    let head = &head[..n];
    if bzimage::is_bzimage(head) {
        bzimage::load(mem, layout, kernel, initrd, cmdline)
    } else if pvh::is_elf(head) {
        pvh::load(mem, layout, kernel, initrd, cmdline)
    } else {
        Err(LoadError::NotLinux)
    }
}

/// Reads until `buf` is full or the file ends.
pub(crate) fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::io::Write;
    use std::sync::atomic::{AtomicU32, Ordering};

    use vm_memory::{GuestAddress, GuestMemoryMmap};

    use crate::layout::MemLayout;

    pub fn mem(layout: &MemLayout) -> GuestMemoryMmap {
        let ranges: Vec<_> = layout
            .regions()
            .iter()
            .map(|r| (GuestAddress(r.gpa), r.len as usize))
            .collect();
        GuestMemoryMmap::from_ranges(&ranges).unwrap()
    }

    /// A temporary file holding `bytes`, deleted when dropped.
    pub struct TempFile(pub std::path::PathBuf, pub std::fs::File);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    pub fn temp_file(bytes: &[u8]) -> TempFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "bhyve-fw-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        drop(f);
        let f = std::fs::File::open(&p).unwrap();
        TempFile(p, f)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn rejects_unknown_formats() {
        let layout = MemLayout::new(64 << 20).unwrap();
        let m = mem(&layout);
        for bytes in [&b""[..], b"#!/bin/sh\necho hi\n", &[0u8; 4096]] {
            let mut k = temp_file(bytes);
            let e = load_linux(&m, &layout, &mut k.1, None, "").unwrap_err();
            assert!(matches!(e, LoadError::NotLinux), "{e}");
            assert_eq!(
                e.to_string(),
                "not a Linux kernel (no bzImage header, no ELF PVH note)"
            );
        }
    }
}

#[cfg(test)]
mod guests_tests;
