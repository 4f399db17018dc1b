//! A function's configuration space: the type 0 header, BARs, the
//! expansion ROM BAR, the capability list and the interrupt state that
//! follows from them.
//!
//! Registers are bytes with a write mask (and a write-1-to-clear mask for
//! the status register), so any access size and alignment the guest
//! chooses is handled the same way: BAR sizing (write all ones, read the
//! size mask back) falls out of the masks.

use std::sync::Arc;

use super::msi::{Msi, MsiX, CAP_ID_MSI, CAP_ID_MSIX};
use super::{MsiMessage, PciInterrupts, LEGACY_CFG_SIZE};

/// Class code of bridges (host bridge, ISA bridge).
pub const CLASS_BRIDGE: u8 = 0x06;

pub const REG_VENDOR: usize = 0x00;
pub const REG_COMMAND: usize = 0x04;
pub const REG_STATUS: usize = 0x06;
pub const REG_REVISION: usize = 0x08;
pub const REG_HEADER_TYPE: usize = 0x0e;
pub const REG_BAR0: usize = 0x10;
pub const REG_SUBVENDOR: usize = 0x2c;
pub const REG_ROM: usize = 0x30;
pub const REG_CAP_PTR: usize = 0x34;
pub const REG_INTLINE: usize = 0x3c;
pub const REG_INTPIN: usize = 0x3d;
/// Where capabilities start: after the header.
const CAP_START: usize = 0x40;

pub const CMD_IO: u16 = 1 << 0;
pub const CMD_MEM: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// Command bits a guest may set: I/O, memory, bus master, parity error
/// response, SERR#, INTx disable.
const CMD_WRITABLE: u16 = 0x0547;
pub const STATUS_INTX: u16 = 1 << 3;
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Status error bits (write 1 to clear).
const STATUS_W1C: u16 = 0xf900;

pub const BAR_COUNT: usize = 6;
/// The ROM BAR's index in [`PciConfig::bar_regions`] and BAR accesses.
pub const ROM_BAR: u8 = 6;
const ROM_ENABLE: u32 = 1;

/// A function's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciId {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Class, subclass, programming interface.
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    /// Takes this BAR register and the next.
    Mem64,
    /// The expansion ROM BAR (memory, read-only contents).
    Rom,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    #[error("BAR {0}: invalid index, size or overlap with another BAR")]
    BadBar(u8),
    #[error("configuration space full: no room for capability {0:#x}")]
    NoRoom(u8),
    #[error("MSI-X: invalid table or PBA placement")]
    BadMsix,
}

/// A BAR as declared by the device.
#[derive(Debug, Clone, Copy)]
struct Bar {
    kind: BarKind,
    size: u64,
}

/// One decoded BAR: where the guest put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRegion {
    pub bar: u8,
    pub kind: BarKind,
    pub addr: u64,
    pub size: u64,
}

/// What a configuration write changed that the root must act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteEffects {
    /// A BAR, the ROM BAR or the command register's decode bits changed.
    pub bars: bool,
}

pub struct PciConfig {
    bytes: [u8; LEGACY_CFG_SIZE],
    wmask: [u8; LEGACY_CFG_SIZE],
    w1c: [u8; LEGACY_CFG_SIZE],
    bars: [Option<Bar>; BAR_COUNT],
    rom: Option<Arc<[u8]>>,
    rom_size: u64,
    next_cap: usize,
    last_cap: Option<usize>,
    msi: Option<Msi>,
    msix: Option<MsiX>,
    irq: Option<Arc<dyn PciInterrupts>>,
    /// The device's INTx level and what was last sent out.
    intx_level: bool,
    intx_out: bool,
    /// The message each vector was last routed to.
    routed: Vec<Option<MsiMessage>>,
    /// Header bytes restored by a reset.
    initial: Option<[u8; LEGACY_CFG_SIZE]>,
}

impl PciConfig {
    pub fn new(id: PciId) -> Self {
        let mut c = PciConfig {
            bytes: [0; LEGACY_CFG_SIZE],
            wmask: [0; LEGACY_CFG_SIZE],
            w1c: [0; LEGACY_CFG_SIZE],
            bars: [None; BAR_COUNT],
            rom: None,
            rom_size: 0,
            next_cap: CAP_START,
            last_cap: None,
            msi: None,
            msix: None,
            irq: None,
            intx_level: false,
            intx_out: false,
            routed: Vec::new(),
            initial: None,
        };
        c.put16(REG_VENDOR, id.vendor);
        c.put16(REG_VENDOR + 2, id.device);
        c.bytes[REG_REVISION] = id.revision;
        c.bytes[0x09] = id.prog_if;
        c.bytes[0x0a] = id.subclass;
        c.bytes[0x0b] = id.class;
        c.put16(REG_SUBVENDOR, id.subsystem_vendor);
        c.put16(REG_SUBVENDOR + 2, id.subsystem);
        c.wmask[REG_COMMAND..REG_COMMAND + 2].copy_from_slice(&CMD_WRITABLE.to_le_bytes());
        c.w1c[REG_STATUS..REG_STATUS + 2].copy_from_slice(&STATUS_W1C.to_le_bytes());
        // Cache line size, latency timer, interrupt line.
        c.wmask[0x0c] = 0xff;
        c.wmask[0x0d] = 0xff;
        c.wmask[REG_INTLINE] = 0xff;
        c
    }

    fn put16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    fn get32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().expect("4 bytes"))
    }

    /// Sets a header byte the guest cannot change (e.g. `pcireg.*`
    /// overrides, the header type's multi-function bit).
    pub fn set_byte(&mut self, off: u8, v: u8) {
        self.bytes[off as usize] = v;
    }

    pub fn set_word(&mut self, off: u8, v: u16) {
        let off = usize::from(off).min(LEGACY_CFG_SIZE - 2);
        self.put16(off, v);
    }

    /// Lets the guest write `mask` bits of byte `off` (device-specific
    /// registers such as the LPC bridge's PIRQ routing).
    pub fn set_writable(&mut self, off: u8, mask: u8) {
        self.wmask[off as usize] = mask;
    }

    pub fn vendor_device(&self) -> (u16, u16) {
        (self.get16(REG_VENDOR), self.get16(REG_VENDOR + 2))
    }

    pub fn header_type(&self) -> u8 {
        self.bytes[REG_HEADER_TYPE]
    }

    pub fn command(&self) -> u16 {
        self.get16(REG_COMMAND)
    }

    /// Declares BAR `index`. Sizes are rounded up to a power of two (at
    /// least 4 bytes for I/O, 16 for memory, as PCI requires).
    pub fn add_bar(&mut self, index: u8, kind: BarKind, size: u64) -> Result<(), PciError> {
        let i = index as usize;
        let min = if kind == BarKind::Io { 4 } else { 16 };
        let size = size.max(min).checked_next_power_of_two();
        let ok = match (kind, size) {
            (BarKind::Rom, _) | (_, None) => false,
            (BarKind::Io, Some(s)) => s <= 256 && i < BAR_COUNT,
            (BarKind::Mem32, Some(s)) => s <= 1 << 31 && i < BAR_COUNT,
            (BarKind::Mem64, Some(s)) => s <= 1 << 40 && i + 1 < BAR_COUNT,
        };
        let span = if kind == BarKind::Mem64 { 2 } else { 1 };
        if !ok || (i..i + span).any(|j| self.bars[j].is_some() || self.is_upper_half(j)) {
            return Err(PciError::BadBar(index));
        }
        let size = size.expect("checked");
        self.bars[i] = Some(Bar { kind, size });
        let reg = REG_BAR0 + 4 * i;
        let (low_bits, mask): (u32, u64) = match kind {
            BarKind::Io => (1, !(size - 1) & 0xffff_fffc),
            BarKind::Mem32 => (0, !(size - 1) & 0xffff_fff0),
            _ => (0x4, !(size - 1) & !0xf),
        };
        self.bytes[reg..reg + 4].copy_from_slice(&low_bits.to_le_bytes());
        self.wmask[reg..reg + 4].copy_from_slice(&(mask as u32).to_le_bytes());
        if kind == BarKind::Mem64 {
            let hi = ((mask >> 32) as u32).to_le_bytes();
            self.wmask[reg + 4..reg + 8].copy_from_slice(&hi);
        }
        Ok(())
    }

    fn is_upper_half(&self, i: usize) -> bool {
        i > 0
            && matches!(
                self.bars[i - 1],
                Some(Bar {
                    kind: BarKind::Mem64,
                    ..
                })
            )
    }

    /// Gives the function an expansion ROM with these contents (padded
    /// with 0xff to a power of two, at least 2 KiB).
    pub fn set_rom(&mut self, rom: Arc<[u8]>) -> Result<(), PciError> {
        let size = (rom.len() as u64)
            .max(2048)
            .checked_next_power_of_two()
            .filter(|s| *s <= 16 << 20)
            .ok_or(PciError::BadBar(ROM_BAR))?;
        self.rom = Some(rom);
        self.rom_size = size;
        let mask = (!(size - 1) as u32 & 0xffff_f800) | ROM_ENABLE;
        self.wmask[REG_ROM..REG_ROM + 4].copy_from_slice(&mask.to_le_bytes());
        Ok(())
    }

    /// The ROM's byte at `offset` (0xff past its end).
    pub fn rom_read(&self, offset: u64, data: &mut [u8]) {
        let rom = self.rom.as_deref().unwrap_or(&[]);
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset + i as u64)
                .ok()
                .and_then(|o| rom.get(o).copied())
                .unwrap_or(0xff);
        }
    }

    /// Declared size of BAR `bar` (0 when absent).
    pub fn bar_size(&self, bar: u8) -> u64 {
        match bar {
            ROM_BAR if self.rom.is_some() => self.rom_size,
            b => self
                .bars
                .get(b as usize)
                .and_then(|x| x.as_ref())
                .map_or(0, |x| x.size),
        }
    }

    /// The declared BARs, for the root's initial placement.
    pub fn declared_bars(&self) -> Vec<(u8, BarKind, u64)> {
        let mut v: Vec<_> = self
            .bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i as u8, b.kind, b.size)))
            .collect();
        if self.rom.is_some() {
            v.push((ROM_BAR, BarKind::Rom, self.rom_size));
        }
        v
    }

    /// The address currently programmed in BAR `bar`.
    pub fn bar_addr(&self, bar: u8) -> u64 {
        if bar == ROM_BAR {
            return u64::from(self.get32(REG_ROM) & 0xffff_f800);
        }
        let Some(Some(b)) = self.bars.get(bar as usize) else {
            return 0;
        };
        let reg = REG_BAR0 + 4 * bar as usize;
        let lo = u64::from(self.get32(reg));
        match b.kind {
            BarKind::Io => lo & !0x3,
            BarKind::Mem64 => (u64::from(self.get32(reg + 4)) << 32) | (lo & !0xf),
            _ => lo & !0xf,
        }
    }

    /// Programs BAR `bar` (the root's initial placement, as firmware
    /// would).
    pub fn set_bar_addr(&mut self, bar: u8, addr: u64) {
        let (reg, hi) = if bar == ROM_BAR {
            (REG_ROM, false)
        } else {
            let hi = matches!(
                self.bars.get(bar as usize),
                Some(Some(Bar {
                    kind: BarKind::Mem64,
                    ..
                }))
            );
            (REG_BAR0 + 4 * bar as usize, hi)
        };
        if reg > REG_ROM {
            return;
        }
        let mask = u32::from_le_bytes(self.wmask[reg..reg + 4].try_into().expect("4"));
        let keep = self.get32(reg) & !mask;
        let v = keep | (addr as u32 & mask);
        self.bytes[reg..reg + 4].copy_from_slice(&v.to_le_bytes());
        if hi {
            let v = (addr >> 32) as u32;
            self.bytes[reg + 4..reg + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The BARs the function decodes now: the command register enables
    /// I/O or memory decoding, the ROM also needs its own enable bit.
    pub fn bar_regions(&self) -> Vec<BarRegion> {
        let cmd = self.command();
        let mut v = Vec::new();
        for (i, b) in self.bars.iter().enumerate() {
            let Some(b) = b else { continue };
            let on = match b.kind {
                BarKind::Io => cmd & CMD_IO != 0,
                _ => cmd & CMD_MEM != 0,
            };
            if on {
                v.push(BarRegion {
                    bar: i as u8,
                    kind: b.kind,
                    addr: self.bar_addr(i as u8),
                    size: b.size,
                });
            }
        }
        if self.rom.is_some() && cmd & CMD_MEM != 0 && self.get32(REG_ROM) & ROM_ENABLE != 0 {
            v.push(BarRegion {
                bar: ROM_BAR,
                kind: BarKind::Rom,
                addr: self.bar_addr(ROM_BAR),
                size: self.rom_size,
            });
        }
        v
    }

    /// Appends a capability (`body` follows the ID and next-pointer
    /// bytes; `wmask` says which of its bits the guest may write) and
    /// returns its offset.
    pub fn add_capability(&mut self, id: u8, body: &[u8], wmask: &[u8]) -> Result<u16, PciError> {
        let off = self.next_cap;
        let len = (2 + body.len()).div_ceil(4) * 4;
        if off + len > LEGACY_CFG_SIZE {
            return Err(PciError::NoRoom(id));
        }
        self.bytes[off] = id;
        self.bytes[off + 1] = 0;
        self.bytes[off + 2..off + 2 + body.len()].copy_from_slice(body);
        for (i, m) in wmask.iter().take(body.len()).enumerate() {
            self.wmask[off + 2 + i] = *m;
        }
        match self.last_cap {
            Some(prev) => self.bytes[prev + 1] = off as u8,
            None => self.bytes[REG_CAP_PTR] = off as u8,
        }
        let status = self.get16(REG_STATUS) | STATUS_CAP_LIST;
        self.put16(REG_STATUS, status);
        self.last_cap = Some(off);
        self.next_cap = off + len;
        Ok(off as u16)
    }

    /// An MSI capability for `1 << vectors_log2` vectors (at most 32),
    /// 64-bit, with per-vector masks.
    pub fn add_msi(&mut self, vectors_log2: u8) -> Result<u16, PciError> {
        let (body, wmask) = Msi::body(vectors_log2);
        let cap = self.add_capability(CAP_ID_MSI, &body, &wmask)?;
        self.msi = Some(Msi {
            cap,
            mmc: vectors_log2.min(5),
            pending: 0,
        });
        Ok(cap)
    }

    /// An MSI-X capability with `vectors` entries whose table and PBA
    /// live in memory BARs the device declared.
    pub fn add_msix(
        &mut self,
        vectors: u16,
        table: (u8, u64),
        pba: (u8, u64),
    ) -> Result<u16, PciError> {
        let probe = MsiX::new(0, vectors, table.0, table.1, pba.0, pba.1);
        let fits = |(bar, off): (u8, u64), len: u64| {
            off % 8 == 0
                && off < 1 << 32
                && matches!(
                    self.bars.get(bar as usize),
                    Some(Some(Bar { kind: BarKind::Mem32 | BarKind::Mem64, size })) if off + len <= *size
                )
        };
        if vectors == 0
            || vectors > super::msi::MSIX_MAX_VECTORS
            || !fits(table, probe.table_len())
            || !fits(pba, probe.pba_len())
        {
            return Err(PciError::BadMsix);
        }
        let (body, wmask) = probe.body();
        let cap = self.add_capability(CAP_ID_MSIX, &body, &wmask)?;
        self.msix = Some(MsiX::new(cap, vectors, table.0, table.1, pba.0, pba.1));
        Ok(cap)
    }

    /// The interrupt pin (1 = INTA# … 4 = INTD#; 0: none), set by the
    /// device before it is attached; the root routes it.
    pub fn set_intpin(&mut self, pin: u8) {
        self.bytes[REG_INTPIN] = pin.min(4);
    }

    pub fn intpin(&self) -> u8 {
        self.bytes[REG_INTPIN]
    }

    /// Attaches the function's interrupt outputs (done by the root).
    pub fn set_interrupts(&mut self, irq: Arc<dyn PciInterrupts>) {
        self.irq = Some(irq);
        self.initial = Some(self.bytes);
    }

    /// Reads configuration bytes; `off` may be anything the guest chose.
    pub fn read(&self, off: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = off as usize + i;
            *b = self.bytes.get(o).copied().unwrap_or(0);
        }
    }

    /// Writes configuration bytes through the masks and applies what the
    /// write changed (interrupt state, MSI routes).
    pub fn write(&mut self, off: u16, data: &[u8]) -> WriteEffects {
        let decode_before = (self.command() & (CMD_IO | CMD_MEM), self.bar_snapshot());
        for (i, v) in data.iter().enumerate() {
            let o = off as usize + i;
            if o >= LEGACY_CFG_SIZE {
                break;
            }
            let m = self.wmask[o];
            let c = self.w1c[o] & v;
            self.bytes[o] = ((self.bytes[o] & !m) | (v & m)) & !c;
        }
        self.sync_intx();
        self.sync_msi();
        let decode_after = (self.command() & (CMD_IO | CMD_MEM), self.bar_snapshot());
        WriteEffects {
            bars: decode_before != decode_after,
        }
    }

    fn bar_snapshot(&self) -> [u32; 7] {
        let mut s = [0u32; 7];
        for (i, v) in s.iter_mut().enumerate().take(6) {
            *v = self.get32(REG_BAR0 + 4 * i);
        }
        s[6] = self.get32(REG_ROM);
        s
    }

    /// Restores the header the function was attached with, masks MSI-X
    /// and drops the interrupt outputs.
    pub fn reset(&mut self) {
        if let Some(bytes) = self.initial {
            self.bytes = bytes;
        }
        if let Some(x) = &mut self.msix {
            x.reset();
        }
        if let Some(m) = &mut self.msi {
            m.pending = 0;
        }
        self.intx_level = false;
        self.sync_intx();
        self.sync_msi();
    }

    // ---- interrupts -----------------------------------------------------

    pub fn msi_enabled(&self) -> bool {
        self.msi.as_ref().is_some_and(|m| m.enabled(&self.bytes))
    }

    pub fn msix_enabled(&self) -> bool {
        self.msix.as_ref().is_some_and(|m| m.enabled(&self.bytes))
    }

    /// Signals vector `vector` through MSI-X or MSI, whichever the guest
    /// enabled; a masked vector becomes pending. Returns false when
    /// neither is enabled (the device falls back to INTx).
    pub fn raise_interrupt(&mut self, vector: u16) -> bool {
        if let Some(x) = &mut self.msix {
            if x.enabled(&self.bytes) {
                if vector >= x.vectors() {
                    return true;
                }
                if x.masked(&self.bytes, vector) {
                    x.set_pending(vector, true);
                } else if let Some(irq) = &self.irq {
                    irq.fire_msi(vector);
                }
                return true;
            }
        }
        if let Some(m) = &mut self.msi {
            if m.enabled(&self.bytes) {
                if vector >= m.count(&self.bytes) {
                    return true;
                }
                if m.masked(&self.bytes, vector) {
                    m.pending |= 1 << vector;
                    m.sync_pending(&mut self.bytes);
                } else if let Some(irq) = &self.irq {
                    irq.fire_msi(vector);
                }
                return true;
            }
        }
        false
    }

    /// The device's INTx level (level-triggered: held while the cause
    /// lasts).
    pub fn set_intx(&mut self, level: bool) {
        self.intx_level = level;
        self.sync_intx();
    }

    fn sync_intx(&mut self) {
        let mut status = self.get16(REG_STATUS) & !STATUS_INTX;
        if self.intx_level {
            status |= STATUS_INTX;
        }
        self.put16(REG_STATUS, status);
        let out = self.intx_level
            && self.intpin() != 0
            && self.command() & CMD_INTX_DISABLE == 0
            && !self.msi_enabled()
            && !self.msix_enabled();
        if out != self.intx_out {
            self.intx_out = out;
            if let Some(irq) = &self.irq {
                irq.set_intx(out);
            }
        }
    }

    /// Re-routes every vector whose message changed and delivers pending
    /// vectors that became unmasked.
    fn sync_msi(&mut self) {
        let n = self.msix.as_ref().map_or(0, |x| x.vectors() as usize).max(
            self.msi
                .as_ref()
                .map_or(0, |m| usize::from(m.count(&self.bytes))),
        );
        if self.routed.len() < n {
            self.routed.resize(n, None);
        }
        for v in 0..self.routed.len() as u16 {
            let msg = self.vector_message(v);
            if msg != self.routed[v as usize] {
                self.routed[v as usize] = msg;
                if let Some(irq) = &self.irq {
                    irq.route_msi(v, msg);
                }
            }
            if msg.is_some() {
                self.deliver_pending(v);
            }
        }
    }

    fn vector_message(&self, v: u16) -> Option<MsiMessage> {
        if let Some(x) = &self.msix {
            if x.enabled(&self.bytes) {
                return x.message(&self.bytes, v);
            }
        }
        self.msi.as_ref().and_then(|m| m.message(&self.bytes, v))
    }

    fn deliver_pending(&mut self, v: u16) {
        let was = if let Some(x) = self.msix.as_mut().filter(|x| x.enabled(&self.bytes)) {
            let p = x.pending(v);
            x.set_pending(v, false);
            p
        } else if let Some(m) = &mut self.msi {
            let p = v < 32 && m.pending & (1 << v) != 0;
            if v < 32 {
                m.pending &= !(1 << v);
            }
            m.sync_pending(&mut self.bytes);
            p
        } else {
            false
        };
        if was {
            if let Some(irq) = &self.irq {
                irq.fire_msi(v);
            }
        }
    }

    /// Whether a BAR access belongs to the MSI-X table or PBA.
    pub fn msix_claims(&self, bar: u8, offset: u64) -> bool {
        self.msix.as_ref().is_some_and(|x| x.claims(bar, offset))
    }

    pub fn msix_read(&self, bar: u8, offset: u64, data: &mut [u8]) {
        match &self.msix {
            Some(x) => x.read(bar, offset, data),
            None => data.fill(0xff),
        }
    }

    pub fn msix_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        let changed = self.msix.as_mut().and_then(|x| x.write(bar, offset, data));
        if changed.is_some() {
            self.sync_msi();
        }
    }
}
