//! QEMU's firmware configuration device (fw_cfg), I/O-port flavour.
//!
//! What SeaBIOS/OVMF built for QEMU read to learn about the machine: a
//! selector register picks an item, the data register streams its bytes,
//! and the DMA register lets the guest copy an item into its memory in one
//! exit. bhyve offers it with `lpc.fwcfg=qemu` (`qemu_fwcfg.c`); the
//! register layout and DMA protocol follow QEMU's `docs/specs/fw_cfg.rst`.
//!
//! Everything the guest hands us (selector keys, the DMA descriptor, its
//! addresses and lengths) is untrusted: unknown items read as zeros, and a
//! DMA that touches memory outside guest RAM completes with the ERROR bit.

use std::collections::BTreeMap;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::bus::BusDevice;

/// Selector register (16-bit writes).
pub const FW_CFG_PORT_SEL: u16 = 0x510;
/// Data register (byte reads).
pub const FW_CFG_PORT_DATA: u16 = 0x511;
/// DMA address register (big-endian; writing the low half starts a DMA).
pub const FW_CFG_PORT_DMA: u16 = 0x514;
/// Length of the DMA register block (high and low 32-bit halves).
pub const FW_CFG_DMA_LEN: u16 = 8;

pub const FW_CFG_SIGNATURE: u16 = 0x0000;
pub const FW_CFG_ID: u16 = 0x0001;
pub const FW_CFG_UUID: u16 = 0x0002;
pub const FW_CFG_RAM_SIZE: u16 = 0x0003;
pub const FW_CFG_NB_CPUS: u16 = 0x0005;
pub const FW_CFG_MAX_CPUS: u16 = 0x000f;
/// QEMU's `-kernel`/`-initrd`/`-append` for firmware (le32 sizes, then
/// the bytes): OVMF's QemuKernelLoaderFsDxe serves them as the files
/// `kernel` (setup followed by the rest), `initrd` and `cmdline`.
pub const FW_CFG_KERNEL_SIZE: u16 = 0x0008;
pub const FW_CFG_INITRD_SIZE: u16 = 0x000b;
pub const FW_CFG_KERNEL_DATA: u16 = 0x0011;
pub const FW_CFG_INITRD_DATA: u16 = 0x0012;
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x0014;
pub const FW_CFG_CMDLINE_DATA: u16 = 0x0015;
pub const FW_CFG_SETUP_SIZE: u16 = 0x0017;
pub const FW_CFG_SETUP_DATA: u16 = 0x0018;
pub const FW_CFG_FILE_DIR: u16 = 0x0019;
/// First selector handed to files.
pub const FW_CFG_FILE_FIRST: u16 = 0x0020;
/// Architecture-specific items (e.g. QEMU's x86 `FW_CFG_E820_TABLE`).
pub const FW_CFG_ARCH_LOCAL: u16 = 0x8000;
/// Deprecated write-channel bit; QEMU ignores it when looking items up.
const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;
/// Index bits of a key (QEMU's `FW_CFG_ENTRY_MASK` without the arch bit).
const FW_CFG_INDEX_MASK: u16 = 0x3fff;

/// `FW_CFG_ID` feature bits.
pub const FW_CFG_VERSION: u32 = 0x01;
pub const FW_CFG_VERSION_DMA: u32 = 0x02;

/// `FWCfgDmaAccess.control` bits.
pub const FW_CFG_DMA_CTL_ERROR: u32 = 0x01;
pub const FW_CFG_DMA_CTL_READ: u32 = 0x02;
pub const FW_CFG_DMA_CTL_SKIP: u32 = 0x04;
pub const FW_CFG_DMA_CTL_SELECT: u32 = 0x08;
pub const FW_CFG_DMA_CTL_WRITE: u32 = 0x10;

/// What a read of the DMA register returns ("QEMU CFG"), so a guest can
/// probe for DMA support.
const FW_CFG_DMA_SIGNATURE: [u8; 8] = *b"QEMU CFG";

/// A file name's room in a directory entry, NUL included.
pub const FW_CFG_MAX_NAME: usize = 56;
/// Files fit between [`FW_CFG_FILE_FIRST`] and the end of the 14-bit
/// index space.
pub const FW_CFG_MAX_FILES: usize = (FW_CFG_INDEX_MASK - FW_CFG_FILE_FIRST + 1) as usize;
/// Size of one `FWCfgFile` directory entry.
const FILE_ENTRY_LEN: usize = 64;
/// DMA copies go through a buffer of this size, so a guest-chosen length
/// never sizes a host allocation.
const DMA_CHUNK: usize = 4096;

/// Invalid fw_cfg contents supplied by the host (caller bugs or bad
/// `-f` arguments), reported once at VM setup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FwCfgError {
    #[error("fw_cfg file name \"{0}\" is empty or longer than 55 bytes")]
    BadName(String),
    #[error("fw_cfg file \"{0}\" is defined twice")]
    DuplicateFile(String),
    #[error("fw_cfg item {0:#06x} is defined twice or reserved")]
    DuplicateItem(u16),
    #[error("fw_cfg item {0:#06x} is outside the numbered item range")]
    BadKey(u16),
    #[error("too many fw_cfg files (at most {FW_CFG_MAX_FILES})")]
    TooManyFiles,
    #[error("fw_cfg item \"{0}\" is larger than 4 GiB")]
    TooLarge(String),
}

/// Collects items and files, then builds the device.
#[derive(Debug, Default, Clone)]
pub struct FwCfgBuilder {
    items: BTreeMap<u16, Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
}

impl FwCfgBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds numbered item `key` (e.g. [`FW_CFG_NB_CPUS`] as le16). The
    /// signature, ID and file directory are built in; files get their keys
    /// from [`FwCfgBuilder::file`].
    pub fn item(mut self, key: u16, data: Vec<u8>) -> Result<Self, FwCfgError> {
        let generic = key & FW_CFG_ARCH_LOCAL == 0;
        if key & FW_CFG_WRITE_CHANNEL != 0 || (generic && key >= FW_CFG_FILE_FIRST) {
            return Err(FwCfgError::BadKey(key));
        }
        if matches!(key, FW_CFG_SIGNATURE | FW_CFG_ID | FW_CFG_FILE_DIR)
            || self.items.contains_key(&key)
        {
            return Err(FwCfgError::DuplicateItem(key));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(format!("{key:#06x}")));
        }
        self.items.insert(key, data);
        Ok(self)
    }

    /// Adds file `name` (at most 55 bytes, e.g. `etc/e820`). Keys are
    /// given in name order at [`FwCfgBuilder::build`], as QEMU does.
    pub fn file(mut self, name: &str, data: Vec<u8>) -> Result<Self, FwCfgError> {
        if name.is_empty() || name.len() >= FW_CFG_MAX_NAME || name.contains('\0') {
            return Err(FwCfgError::BadName(name.to_string()));
        }
        if self.files.contains_key(name) {
            return Err(FwCfgError::DuplicateFile(name.to_string()));
        }
        if self.files.len() >= FW_CFG_MAX_FILES {
            return Err(FwCfgError::TooManyFiles);
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(name.to_string()));
        }
        self.files.insert(name.to_string(), data);
        Ok(self)
    }

    /// The device, doing DMA into `mem`.
    pub fn build(self, mem: Arc<GuestMemoryMmap>) -> FwCfg {
        let mut items = self.items;
        items.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        items.insert(
            FW_CFG_ID,
            (FW_CFG_VERSION | FW_CFG_VERSION_DMA).to_le_bytes().to_vec(),
        );
        let mut dir = Vec::with_capacity(4 + self.files.len() * FILE_ENTRY_LEN);
        // Bounded by FW_CFG_MAX_FILES in `file`.
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (key, (name, data)) in (FW_CFG_FILE_FIRST..).zip(self.files) {
            // Sizes were checked against u32 in `file`.
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FW_CFG_MAX_NAME];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
            items.insert(key, data);
        }
        items.insert(FW_CFG_FILE_DIR, dir);
        FwCfg {
            items,
            mem,
            selector: 0,
            offset: 0,
            dma_addr: 0,
        }
    }
}

/// The fw_cfg device. Register it on the port bus with
/// [`FwCfg::port_ranges`]; one shared device serves all ranges.
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    mem: Arc<GuestMemoryMmap>,
    selector: u16,
    /// Position in the selected item (u64: a guest may read forever).
    offset: u64,
    dma_addr: u64,
}

impl FwCfg {
    /// `(base, len)` pairs to insert on the port bus: selector and data
    /// (0x510, 2) and the DMA address register (0x514, 8).
    pub fn port_ranges() -> [(u64, u64); 2] {
        [
            (u64::from(FW_CFG_PORT_SEL), 2),
            (u64::from(FW_CFG_PORT_DMA), u64::from(FW_CFG_DMA_LEN)),
        ]
    }

    /// The file directory's view of `name`: its key and size.
    pub fn file_key(&self, name: &str) -> Option<(u16, u32)> {
        let dir = self.items.get(&FW_CFG_FILE_DIR)?;
        dir.get(4..)?.chunks_exact(FILE_ENTRY_LEN).find_map(|e| {
            let n = &e[8..];
            let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
            (&n[..end] == name.as_bytes()).then(|| {
                (
                    u16::from_be_bytes([e[4], e[5]]),
                    u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                )
            })
        })
    }

    fn select(&mut self, key: u16) {
        self.selector = key;
        self.offset = 0;
        // Which items firmware reads is how far it got (OVMF's release
        // build logs nothing).
        if log::log_enabled!(log::Level::Debug) {
            match self.file_name(key & !FW_CFG_WRITE_CHANNEL) {
                Some(name) => log::debug!("fw_cfg: select {key:#06x} ({name})"),
                None => log::debug!("fw_cfg: select {key:#06x}"),
            }
        }
    }

    /// The directory's name for file key `key`.
    fn file_name(&self, key: u16) -> Option<String> {
        let dir = self.items.get(&FW_CFG_FILE_DIR)?;
        dir.get(4..)?.chunks_exact(FILE_ENTRY_LEN).find_map(|e| {
            (u16::from_be_bytes([e[4], e[5]]) == key).then(|| {
                let n = &e[8..];
                let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
                String::from_utf8_lossy(&n[..end]).into_owned()
            })
        })
    }

    fn current(&self) -> &[u8] {
        let key = self.selector & !FW_CFG_WRITE_CHANNEL;
        self.items.get(&key).map(Vec::as_slice).unwrap_or(&[])
    }

    fn read_data_byte(&mut self) -> u8 {
        let item = self.current();
        let b = usize::try_from(self.offset)
            .ok()
            .and_then(|o| item.get(o).copied());
        match b {
            Some(b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }

    /// Runs the `FWCfgDmaAccess` at guest address `desc` and writes the
    /// resulting control word back.
    fn dma(&mut self, desc: u64) {
        if desc.checked_add(16).is_none() {
            return;
        }
        let desc_addr = GuestAddress(desc);
        let mut raw = [0u8; 16];
        if self.mem.read_slice(&mut raw, desc_addr).is_err() {
            log::debug!("fw_cfg: DMA descriptor at {desc:#x} is outside guest memory");
            // Best effort: part of the descriptor may still be RAM.
            let _ = self
                .mem
                .write_slice(&FW_CFG_DMA_CTL_ERROR.to_be_bytes(), desc_addr);
            return;
        }
        let control = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let length = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let mut addr = u64::from_be_bytes([
            raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
        ]);
        if control & FW_CFG_DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        // Priority as in QEMU: READ, then WRITE, then SKIP; with none of
        // them the transfer is empty.
        let op = if control & FW_CFG_DMA_CTL_READ != 0 {
            Some(DmaOp::Read)
        } else if control & FW_CFG_DMA_CTL_WRITE != 0 {
            Some(DmaOp::Write)
        } else if control & FW_CFG_DMA_CTL_SKIP != 0 {
            Some(DmaOp::Skip)
        } else {
            None
        };
        let mut remaining = if op.is_some() { u64::from(length) } else { 0 };
        let mut status = 0;
        // No item is writable: a write fails without touching memory.
        if op == Some(DmaOp::Write) && remaining > 0 {
            status = FW_CFG_DMA_CTL_ERROR;
            remaining = 0;
        }
        let mut buf = [0u8; DMA_CHUNK];
        while remaining > 0 {
            let avail = (self.current().len() as u64).saturating_sub(self.offset);
            let chunk = remaining.min(DMA_CHUNK as u64);
            // Past the end of the item a read fills zeros (as QEMU does)
            // and the offset stays put.
            let n = if avail == 0 { chunk } else { chunk.min(avail) } as usize;
            if op == Some(DmaOp::Read) {
                let out = &mut buf[..n];
                if avail == 0 {
                    out.fill(0);
                } else {
                    // offset < item length here, so it fits in usize.
                    let start = self.offset as usize;
                    out.copy_from_slice(&self.current()[start..start + n]);
                }
                let ok = addr.checked_add(n as u64).is_some()
                    && self.mem.write_slice(out, GuestAddress(addr)).is_ok();
                if !ok {
                    log::debug!("fw_cfg: DMA to {addr:#x}+{n:#x} is outside guest memory");
                    status = FW_CFG_DMA_CTL_ERROR;
                    break;
                }
            }
            if avail != 0 {
                self.offset += n as u64;
            }
            addr = addr.wrapping_add(n as u64);
            remaining -= n as u64;
        }
        // Best effort: the guest owns the descriptor's memory.
        let _ = self.mem.write_slice(&status.to_be_bytes(), desc_addr);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DmaOp {
    Read,
    Write,
    Skip,
}

impl BusDevice for FwCfg {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if base == u64::from(FW_CFG_PORT_DMA) {
            // Big-endian register: byte i of the access is signature byte
            // offset + i.
            for (i, d) in data.iter_mut().enumerate() {
                let at = offset as usize + i;
                *d = FW_CFG_DMA_SIGNATURE.get(at).copied().unwrap_or(0);
            }
            return;
        }
        // Selector and data share one register pair: QEMU serves byte
        // reads of either port from the data stream, and wider reads are
        // not valid (they read as zero here).
        if data.len() == 1 {
            data[0] = self.read_data_byte();
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if base == u64::from(FW_CFG_PORT_DMA) {
            match (offset, data.len()) {
                (0, 4) => {
                    let hi = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                    self.dma_addr = u64::from(hi) << 32;
                }
                (4, 4) => {
                    let lo = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                    self.dma_addr |= u64::from(lo);
                    let desc = self.dma_addr;
                    // The next descriptor starts with a fresh high half.
                    self.dma_addr = 0;
                    self.dma(desc);
                }
                (0, 8) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(data);
                    self.dma_addr = 0;
                    self.dma(u64::from_be_bytes(b));
                }
                _ => log::debug!("fw_cfg: ignored {}-byte DMA register write", data.len()),
            }
            return;
        }
        // A 16-bit write to either port selects (little-endian, as x86 `outw`
        // puts it on the bus); byte writes were the data channel, which QEMU
        // ignores since 2.4.
        if data.len() == 2 {
            self.select(u16::from_le_bytes([data[0], data[1]]));
        }
    }
}

/// The numbered items QEMU's `-kernel`, `-initrd` and `-append` give
/// firmware. A Linux bzImage ("HdrS" at 0x202) is split as QEMU splits it:
/// the real-mode setup (`setup_sects` + 1 sectors, 4 + 1 when the field is
/// 0) in the SETUP items, the rest in the KERNEL items; anything else
/// (e.g. an EFI application such as a GRUB image) goes whole into the
/// KERNEL items with an empty setup. The command line is NUL-terminated,
/// its size counting the NUL. Sizes above 4 GiB are refused by
/// [`FwCfgBuilder::item`].
pub fn kernel_items(kernel: &[u8], initrd: Option<&[u8]>, cmdline: &str) -> Vec<(u16, Vec<u8>)> {
    let is_bzimage = kernel.get(0x202..0x206) == Some(b"HdrS");
    let setup_len = if is_bzimage {
        let sects = match kernel[0x1f1] {
            0 => 4,
            n => usize::from(n),
        };
        ((sects + 1) * 512).min(kernel.len())
    } else {
        0
    };
    let (setup, rest) = kernel.split_at(setup_len);
    let size = |n: usize| (n as u32).to_le_bytes().to_vec();
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);
    let mut v = vec![
        (FW_CFG_SETUP_SIZE, size(setup.len())),
        (FW_CFG_SETUP_DATA, setup.to_vec()),
        (FW_CFG_KERNEL_SIZE, size(rest.len())),
        (FW_CFG_KERNEL_DATA, rest.to_vec()),
        (FW_CFG_CMDLINE_SIZE, size(cmd.len())),
        (FW_CFG_CMDLINE_DATA, cmd),
    ];
    if let Some(initrd) = initrd {
        v.push((FW_CFG_INITRD_SIZE, size(initrd.len())));
        v.push((FW_CFG_INITRD_DATA, initrd.to_vec()));
    }
    v
}

/// QEMU's `etc/e820` file: per entry le64 address, le64 length, le32 type.
pub fn e820_file(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 20);
    for &(addr, len, kind) in entries {
        out.extend_from_slice(&addr.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
    }
    out
}

/// QEMU's `bootorder` file: device paths, one a line, the last one
/// NUL-terminated instead. Empty for no paths: QEMU then adds no file.
pub fn bootorder_file(paths: &[String]) -> Vec<u8> {
    if paths.is_empty() {
        return Vec::new();
    }
    let mut out = paths.join("\n").into_bytes();
    out.push(0);
    out
}

#[cfg(test)]
#[path = "fw_cfg_tests.rs"]
mod tests;
