//! ELF kernels through the PVH boot ABI (Xen's
//! docs/misc/pvh.pandoc, also used by QEMU/KVM): the PT_LOAD segments go to
//! their physical addresses, an `hvm_start_info` describes the command
//! line, the modules (initrd) and the memory map, and vCPU 0 starts in
//! 32-bit protected mode, paging off, at the entry point of the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note with `ebx` = hvm_start_info.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use linux_loader::loader::{Elf, KernelLoader};
use vm_memory::GuestMemoryBackend;

use super::bootmem::{
    self, BOOT_INFO_ADDR, BOOT_INFO_END, CMDLINE_MAX, KERNEL_MIN_ADDR, STACK_TOP,
};
use super::LoadError;
use crate::entry::{EntryMode, EntryState};
use crate::layout::MemLayout;

pub const HVM_START_MAGIC: u32 = 0x336e_c578;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const EM_X86_64: u16 = 62;
/// More program headers than any kernel has; bounds what we read.
const MAX_PHDRS: usize = 256;
/// Largest note segment scanned for the PVH note.
const MAX_NOTES: u64 = 1 << 20;

/// hvm_start_info (56 bytes), then the module list and the memory map.
const START_INFO_SIZE: u64 = 56;
const MODLIST_ADDR: u64 = BOOT_INFO_ADDR + 0x40;
const MODLIST_ENTRY_SIZE: u64 = 32;
const MEMMAP_ADDR: u64 = BOOT_INFO_ADDR + 0x80;
const MEMMAP_ENTRY_SIZE: u64 = 24;
const _: () = assert!(BOOT_INFO_ADDR + START_INFO_SIZE <= MODLIST_ADDR);
const _: () = assert!(MODLIST_ADDR + MODLIST_ENTRY_SIZE <= MEMMAP_ADDR);

pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

struct Phdr {
    p_type: u32,
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

/// What the loader needs to know about an ELF kernel before loading it.
struct ElfInfo {
    entry: u32,
    /// `[addr, addr + len)` ranges past each segment's file data.
    bss: Vec<(u64, u64)>,
    /// `[start, end)` of the loaded segments in guest physical memory.
    start: u64,
    end: u64,
}

fn bad(msg: impl Into<String>) -> LoadError {
    LoadError::BadElf(msg.into())
}

/// Validates the headers and every segment's place in guest RAM, and
/// finds the PVH entry point.
fn inspect(kernel: &mut File, layout: &MemLayout) -> Result<ElfInfo, LoadError> {
    let io = |e| LoadError::Io {
        what: "kernel",
        source: e,
    };
    let file_len = kernel.seek(SeekFrom::End(0)).map_err(io)?;
    let mut eh = [0u8; EHDR_SIZE];
    kernel.seek(SeekFrom::Start(0)).map_err(io)?;
    kernel
        .read_exact(&mut eh)
        .map_err(|_| bad("truncated ELF header"))?;
    if eh[4] != 2 || eh[5] != 1 || u16_at(&eh, 18) != EM_X86_64 {
        return Err(bad("not a little-endian ELF64 x86-64 image"));
    }
    let phoff = u64_at(&eh, 32);
    let phentsize = usize::from(u16_at(&eh, 54));
    let phnum = usize::from(u16_at(&eh, 56));
    if phentsize != PHDR_SIZE || phnum == 0 || phnum > MAX_PHDRS {
        return Err(bad(format!(
            "bad program headers ({phnum} of {phentsize} bytes)"
        )));
    }
    let mut raw = vec![0u8; phnum * PHDR_SIZE];
    kernel.seek(SeekFrom::Start(phoff)).map_err(io)?;
    kernel
        .read_exact(&mut raw)
        .map_err(|_| bad("truncated program headers"))?;
    let phdrs: Vec<Phdr> = raw
        .chunks_exact(PHDR_SIZE)
        .map(|p| Phdr {
            p_type: u32_at(p, 0),
            offset: u64_at(p, 8),
            paddr: u64_at(p, 24),
            filesz: u64_at(p, 32),
            memsz: u64_at(p, 40),
        })
        .collect();

    let (mut start, mut end) = (u64::MAX, 0);
    let mut entry = None;
    let mut bss = Vec::new();
    for p in &phdrs {
        if p.offset.checked_add(p.filesz).is_none_or(|e| e > file_len) {
            return Err(bad("segment extends past the end of the file"));
        }
        match p.p_type {
            PT_LOAD if p.memsz > 0 => {
                if p.filesz > p.memsz {
                    return Err(bad("segment's file size exceeds its memory size"));
                }
                let seg_end = p
                    .paddr
                    .checked_add(p.memsz)
                    .ok_or_else(|| bad("segment address overflows"))?;
                if p.paddr < KERNEL_MIN_ADDR || !layout.is_usable_ram(p.paddr, p.memsz) {
                    return Err(LoadError::KernelTooBig {
                        start: p.paddr,
                        end: seg_end,
                        lowmem: layout.lowmem(),
                    });
                }
                if p.memsz > p.filesz {
                    bss.push((p.paddr + p.filesz, p.memsz - p.filesz));
                }
                start = start.min(p.paddr);
                end = end.max(seg_end);
            }
            PT_NOTE if entry.is_none() => entry = find_pvh_note(kernel, p)?,
            _ => {}
        }
    }
    let entry = entry.ok_or(LoadError::NoPvhNote)?;
    if end == 0 {
        return Err(bad("no loadable segment"));
    }
    if !(start..end).contains(&u64::from(entry)) {
        return Err(bad(format!(
            "PVH entry {entry:#x} is outside the loaded image"
        )));
    }
    Ok(ElfInfo {
        entry,
        bss,
        start,
        end,
    })
}

/// Scans one PT_NOTE segment for "Xen" note 18 (the 32-bit PVH entry).
fn find_pvh_note(kernel: &mut File, p: &Phdr) -> Result<Option<u32>, LoadError> {
    let len = p.filesz.min(MAX_NOTES) as usize;
    let mut buf = vec![0u8; len];
    kernel
        .seek(SeekFrom::Start(p.offset))
        .and_then(|_| kernel.read_exact(&mut buf))
        .map_err(|e| LoadError::Io {
            what: "kernel",
            source: e,
        })?;
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut off = 0usize;
    while off + 12 <= buf.len() {
        let namesz = u32_at(&buf, off) as usize;
        let descsz = u32_at(&buf, off + 4) as usize;
        let kind = u32_at(&buf, off + 8);
        let name_off = off + 12;
        let Some(desc_off) = align4(namesz).and_then(|n| n.checked_add(name_off)) else {
            break;
        };
        let Some(next) = align4(descsz).and_then(|n| n.checked_add(desc_off)) else {
            break;
        };
        if next > buf.len() {
            break;
        }
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && buf[name_off..name_off + namesz] == *b"Xen\0" {
            if descsz < 4 {
                return Err(bad("PVH entry note is too short"));
            }
            return Ok(Some(u32_at(&buf, desc_off)));
        }
        off = next;
    }
    Ok(None)
}

pub fn load<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemLayout,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
) -> Result<EntryState, LoadError> {
    let info = inspect(kernel, layout)?;
    Elf::load(mem, None, kernel, None)?;
    // linux-loader copies file data only; RAM may hold a previous boot's
    // contents, so clear the rest of each segment.
    let zeros = vec![0u8; 64 << 10];
    for &(addr, len) in &info.bss {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64);
            bootmem::write_bytes(mem, addr + done, &zeros[..n as usize])?;
            done += n;
        }
    }

    let cmd_addr = bootmem::write_cmdline(mem, cmdline, CMDLINE_MAX)?;
    let mut nr_modules = 0u32;
    if let Some(file) = initrd {
        let rd = bootmem::load_initrd(mem, layout, file, info.end, u64::MAX)?;
        let mut m = Vec::with_capacity(MODLIST_ENTRY_SIZE as usize);
        for v in [rd.addr, rd.size, 0, 0] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        bootmem::write_bytes(mem, MODLIST_ADDR, &m)?;
        nr_modules = 1;
    }

    let e820 = layout.e820();
    let mut map = Vec::with_capacity(e820.len() * MEMMAP_ENTRY_SIZE as usize);
    for e in &e820 {
        map.extend_from_slice(&e.addr.to_le_bytes());
        map.extend_from_slice(&e.size.to_le_bytes());
        map.extend_from_slice(&(e.kind as u32).to_le_bytes());
        map.extend_from_slice(&0u32.to_le_bytes());
    }
    debug_assert!(MEMMAP_ADDR + map.len() as u64 <= BOOT_INFO_END);
    bootmem::write_bytes(mem, MEMMAP_ADDR, &map)?;

    let mut si = Vec::with_capacity(START_INFO_SIZE as usize);
    si.extend_from_slice(&HVM_START_MAGIC.to_le_bytes());
    si.extend_from_slice(&1u32.to_le_bytes()); // version
    si.extend_from_slice(&0u32.to_le_bytes()); // flags
    si.extend_from_slice(&nr_modules.to_le_bytes());
    let modlist = if nr_modules > 0 { MODLIST_ADDR } else { 0 };
    si.extend_from_slice(&modlist.to_le_bytes());
    si.extend_from_slice(&cmd_addr.to_le_bytes());
    si.extend_from_slice(&0u64.to_le_bytes()); // rsdp_paddr: no ACPI yet
    si.extend_from_slice(&MEMMAP_ADDR.to_le_bytes());
    si.extend_from_slice(&(e820.len() as u32).to_le_bytes());
    si.extend_from_slice(&0u32.to_le_bytes());
    bootmem::write_bytes(mem, BOOT_INFO_ADDR, &si)?;

    let (gdt_base, gdt_limit) = bootmem::write_gdt(mem)?;
    log::debug!(
        "PVH: loaded {:#x}..{:#x}, entry {:#x}, start_info at {BOOT_INFO_ADDR:#x}",
        info.start,
        info.end,
        info.entry
    );
    Ok(EntryState {
        mode: EntryMode::Protected32,
        rip: u64::from(info.entry),
        rsp: STACK_TOP,
        rbx: BOOT_INFO_ADDR,
        rsi: 0,
        cr3: 0,
        gdt_base,
        gdt_limit,
    })
}

#[cfg(test)]
mod tests;
