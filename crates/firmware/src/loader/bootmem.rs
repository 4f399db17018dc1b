//! Boot structures shared by the loaders: where they live in low guest
//! memory, the GDT, identity page tables, the command line and the initrd.
//!
//! Everything sits between 4 KiB and 640 KiB, below any kernel (kernels
//! load at 1 MiB or above) and outside the reserved legacy hole:
//!
//! | range | what |
//! |---|---|
//! | 0x1000 | GDT ([`BOOT_GDT`]) |
//! | 0x7000–0x7fff | boot_params (bzImage) or hvm_start_info + modlist + memmap (PVH) |
//! | 0x8000–0x8fff | initial stack (rsp = 0x8ff0) |
//! | 0x9000–0xefff | PML4, PDPT, 4 page directories (identity map of 0–4 GiB, 2 MiB pages) |
//! | 0x10000–0x1ffff | free (test guests put their SMP trampoline here) |
//! | 0x20000–0x2ffff | command line, NUL-terminated |

use std::fs::File;
use std::io::{Seek, SeekFrom};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::LoadError;
use crate::entry::BOOT_GDT;
use crate::layout::{MemLayout, LEGACY_HOLE_START, PAGE_SIZE};

pub const GDT_ADDR: u64 = 0x1000;
pub const BOOT_INFO_ADDR: u64 = 0x7000;
pub const BOOT_INFO_END: u64 = 0x8000;
pub const STACK_TOP: u64 = 0x8ff0;
pub const PML4_ADDR: u64 = 0x9000;
const PDPT_ADDR: u64 = 0xa000;
const PD_ADDR: u64 = 0xb000;
/// Page directories: one per GiB identity-mapped.
const PD_COUNT: u64 = 4;
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Longest command line, without its terminating NUL.
pub const CMDLINE_MAX: usize = 0xffff;
/// Lowest address a kernel may be loaded at.
pub const KERNEL_MIN_ADDR: u64 = 0x10_0000;

const _: () = assert!(PD_ADDR + PD_COUNT * PAGE_SIZE <= 0x10000);
const _: () = assert!(CMDLINE_ADDR + (CMDLINE_MAX as u64) < LEGACY_HOLE_START);

pub fn write_bytes<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    bytes: &[u8],
) -> Result<(), LoadError> {
    mem.write_slice(bytes, GuestAddress(addr)).map_err(|e| {
        LoadError::GuestMemory(format!("writing {} bytes at {addr:#x}: {e}", bytes.len()))
    })
}

/// Writes [`BOOT_GDT`]; returns (base, limit).
pub fn write_gdt<M: GuestMemoryBackend>(mem: &M) -> Result<(u64, u16), LoadError> {
    let bytes: Vec<u8> = BOOT_GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    write_bytes(mem, GDT_ADDR, &bytes)?;
    Ok((GDT_ADDR, (bytes.len() - 1) as u16))
}

/// Identity-maps the first 4 GiB with 2 MiB pages; returns CR3.
pub fn write_page_tables<M: GuestMemoryBackend>(mem: &M) -> Result<u64, LoadError> {
    const PRESENT_RW: u64 = 0x3;
    const PAGE_2M: u64 = 0x80;
    write_bytes(mem, PML4_ADDR, &(PDPT_ADDR | PRESENT_RW).to_le_bytes())?;
    let pdpt: Vec<u8> = (0..PD_COUNT)
        .flat_map(|i| ((PD_ADDR + i * PAGE_SIZE) | PRESENT_RW).to_le_bytes())
        .collect();
    write_bytes(mem, PDPT_ADDR, &pdpt)?;
    let pds: Vec<u8> = (0..PD_COUNT * 512)
        .flat_map(|i| ((i << 21) | PAGE_2M | PRESENT_RW).to_le_bytes())
        .collect();
    write_bytes(mem, PD_ADDR, &pds)?;
    Ok(PML4_ADDR)
}

/// Writes the NUL-terminated command line at [`CMDLINE_ADDR`]; `max` is
/// the longest length the kernel accepts (without the NUL).
pub fn write_cmdline<M: GuestMemoryBackend>(
    mem: &M,
    cmdline: &str,
    max: usize,
) -> Result<u64, LoadError> {
    let max = max.min(CMDLINE_MAX);
    if cmdline.len() > max {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(LoadError::CmdlineNul);
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    write_bytes(mem, CMDLINE_ADDR, &bytes)?;
    Ok(CMDLINE_ADDR)
}

/// Where an initrd went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initrd {
    pub addr: u64,
    pub size: u64,
}

/// Loads the initrd page-aligned as high as possible with its end at or
/// below `limit` (exclusive) and the top of low memory, and its start at
/// or above `floor` (the end of the kernel).
pub fn load_initrd<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemLayout,
    file: &mut File,
    floor: u64,
    limit: u64,
) -> Result<Initrd, LoadError> {
    let io = |e| LoadError::Io {
        what: "initrd",
        source: e,
    };
    let size = file.seek(SeekFrom::End(0)).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let top = limit.min(layout.lowmem());
    let floor = floor
        .checked_next_multiple_of(PAGE_SIZE)
        .unwrap_or(u64::MAX);
    let addr = top
        .checked_sub(size)
        .map(|a| a - a % PAGE_SIZE)
        .filter(|a| *a >= floor && layout.is_usable_ram(*a, size))
        .ok_or(LoadError::InitrdTooBig {
            size,
            avail: top.saturating_sub(floor),
        })?;
    let len = usize::try_from(size).map_err(|_| LoadError::InitrdTooBig { size, avail: 0 })?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|e| LoadError::GuestMemory(format!("reading the initrd to {addr:#x}: {e}")))?;
    Ok(Initrd { addr, size })
}
