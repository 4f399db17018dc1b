//! bzImage through Linux's 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the protected-mode kernel is loaded
//! at 1 MiB, a boot_params "zero page" carries the setup header, the
//! command line, the initrd and the e820 map, and vCPU 0 starts in long
//! mode at `startup_64` (load address + 0x200) with `rsi` = boot_params.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend};

use super::bootmem::{self, BOOT_INFO_ADDR, KERNEL_MIN_ADDR, STACK_TOP};
use super::{read_up_to, LoadError};
use crate::entry::{EntryMode, EntryState};
use crate::layout::MemLayout;

/// Offset of the setup header in the image (and in boot_params).
const HDR_OFFSET: usize = 0x1f1;
const HDR_MAGIC: &[u8; 4] = b"HdrS";
const HDR_MAGIC_OFFSET: usize = 0x202;
/// The 64-bit entry point's offset from the load address.
const STARTUP_64_OFFSET: u64 = 0x200;
/// boot_params.hdr.loadflags: protected-mode code loads at 0x100000.
const LOADED_HIGH: u8 = 0x01;
/// boot_params.hdr.xloadflags: the kernel has the 64-bit entry point.
const XLF_KERNEL_64: u16 = 0x01;
/// boot_params.hdr.type_of_loader: "undefined" boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// initrd_addr_max before boot protocol 2.03.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// Command line limit before boot protocol 2.06.
const DEFAULT_CMDLINE_SIZE: usize = 255;
const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// Whether the image starts with a Linux real-mode setup header.
pub fn is_bzimage(head: &[u8]) -> bool {
    head.get(HDR_MAGIC_OFFSET..HDR_MAGIC_OFFSET + 4) == Some(&HDR_MAGIC[..])
}

/// Reads the setup header; returns it and its length as the image
/// declares it (0x202 + the jump's displacement byte, at most the struct).
fn read_header(kernel: &mut File) -> Result<(setup_header, usize), LoadError> {
    let io = |e| LoadError::Io {
        what: "kernel",
        source: e,
    };
    let mut hdr = setup_header::default();
    kernel
        .seek(SeekFrom::Start(HDR_OFFSET as u64))
        .map_err(io)?;
    let n = read_up_to(kernel, hdr.as_mut_slice()).map_err(io)?;
    // The byte after the 2-byte jump at 0x200 says where the header ends.
    let declared = 0x202 + usize::from((hdr.jump >> 8) as u8) - HDR_OFFSET;
    let len = declared.min(n).min(std::mem::size_of::<setup_header>());
    hdr.as_mut_slice()[len..].fill(0);
    Ok((hdr, len))
}

pub fn load<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemLayout,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
) -> Result<EntryState, LoadError> {
    let (hdr, hdr_len) = read_header(kernel)?;
    let version = hdr.version;
    if version < 0x206 {
        return Err(LoadError::UnsupportedBzImage(format!(
            "boot protocol {}.{:02} is older than 2.06",
            version >> 8,
            version & 0xff
        )));
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LoadError::UnsupportedBzImage(
            "no 64-bit entry point (XLF_KERNEL_64 not set)".into(),
        ));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(LoadError::UnsupportedBzImage(
            "not a bzImage (zImage loads low)".into(),
        ));
    }

    let file_len = kernel.seek(SeekFrom::End(0)).map_err(|e| LoadError::Io {
        what: "kernel",
        source: e,
    })?;
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => u64::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    let payload = file_len
        .checked_sub(setup_size)
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            LoadError::UnsupportedBzImage(format!(
                "image ends inside its {setup_size}-byte setup code"
            ))
        })?;
    let load_addr = KERNEL_MIN_ADDR;
    // The kernel needs init_size bytes from its load address while it
    // decompresses itself: keep all of it in RAM and below the initrd.
    let kernel_end = load_addr + payload.max(u64::from(hdr.init_size));
    if !layout.is_usable_ram(load_addr, kernel_end - load_addr) {
        return Err(LoadError::KernelTooBig {
            start: load_addr,
            end: kernel_end,
            lowmem: layout.lowmem(),
        });
    }
    BzImage::load(mem, Some(GuestAddress(load_addr)), kernel, None)?;

    let mut params = boot_params::default();
    params.as_mut_slice()[HDR_OFFSET..HDR_OFFSET + hdr_len]
        .copy_from_slice(&hdr.as_slice()[..hdr_len]);
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.code32_start = load_addr as u32;

    let cmdline_max = match hdr.cmdline_size {
        0 => DEFAULT_CMDLINE_SIZE,
        n => n as usize,
    };
    let cmd_addr = bootmem::write_cmdline(mem, cmdline, cmdline_max)?;
    params.hdr.cmd_line_ptr = cmd_addr as u32;
    params.ext_cmd_line_ptr = (cmd_addr >> 32) as u32;

    if let Some(file) = initrd {
        let addr_max = match hdr.initrd_addr_max {
            0 => DEFAULT_INITRD_ADDR_MAX,
            n => u64::from(n),
        };
        let rd = bootmem::load_initrd(mem, layout, file, kernel_end, addr_max + 1)?;
        params.hdr.ramdisk_image = rd.addr as u32;
        params.hdr.ramdisk_size = rd.size as u32;
        params.ext_ramdisk_image = (rd.addr >> 32) as u32;
        params.ext_ramdisk_size = (rd.size >> 32) as u32;
    }

    let e820 = layout.e820();
    debug_assert!(e820.len() <= E820_MAX_ENTRIES_ZEROPAGE);
    for (slot, e) in params.e820_table.iter_mut().zip(&e820) {
        slot.addr = e.addr;
        slot.size = e.size;
        slot.r#type = e.kind as u32;
    }
    params.e820_entries = e820.len().min(E820_MAX_ENTRIES_ZEROPAGE) as u8;
    bootmem::write_bytes(mem, BOOT_INFO_ADDR, params.as_slice())?;

    let (gdt_base, gdt_limit) = bootmem::write_gdt(mem)?;
    let cr3 = bootmem::write_page_tables(mem)?;
    log::debug!(
        "bzImage: protocol {version:#x}, loaded at {load_addr:#x}..{kernel_end:#x}, boot_params at {BOOT_INFO_ADDR:#x}"
    );
    Ok(EntryState {
        mode: EntryMode::Long64,
        rip: load_addr + STARTUP_64_OFFSET,
        rsp: STACK_TOP,
        rbx: 0,
        rsi: BOOT_INFO_ADDR,
        cr3,
        gdt_base,
        gdt_limit,
    })
}

#[cfg(test)]
mod tests;
