//! The MSI and MSI-X capabilities: where their registers sit, what the
//! guest may write, and which message each vector delivers.
//!
//! The registers themselves live in the function's configuration bytes
//! (MSI) or in an MSI-X table kept here and reached through a BAR; this
//! module only interprets them. Pending bits are set when a vector fires
//! while masked and are delivered when it is unmasked.

use super::MsiMessage;

pub const CAP_ID_MSI: u8 = 0x05;
pub const CAP_ID_MSIX: u8 = 0x11;

/// MSI message control bits.
const MSI_ENABLE: u16 = 1 << 0;
const MSI_64BIT: u16 = 1 << 7;
const MSI_PER_VECTOR_MASK: u16 = 1 << 8;

/// MSI-X message control bits.
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// The largest MSI-X table the capability can describe.
pub const MSIX_MAX_VECTORS: u16 = 2048;
pub const MSIX_ENTRY_SIZE: u64 = 16;
const MSIX_ENTRY_MASKED: u32 = 1;

/// An MSI capability with 64-bit addresses and per-vector masking.
#[derive(Debug, Clone)]
pub struct Msi {
    /// Offset of the capability in configuration space.
    pub cap: u16,
    /// log2 of the vectors the function asks for (Multiple Message
    /// Capable).
    pub mmc: u8,
    /// Vectors that fired while masked.
    pub pending: u32,
}

impl Msi {
    /// Capability length: header, control, address (64-bit), data,
    /// reserved, mask, pending.
    pub const LEN: usize = 24;

    /// The capability's bytes after the ID/next header, and which bits of
    /// them the guest may write.
    pub fn body(vectors_log2: u8) -> (Vec<u8>, Vec<u8>) {
        let ctl = MSI_64BIT | MSI_PER_VECTOR_MASK | (u16::from(vectors_log2.min(5)) << 1);
        let mut body = vec![0u8; Self::LEN - 2];
        body[..2].copy_from_slice(&ctl.to_le_bytes());
        let mut wmask = vec![0u8; Self::LEN - 2];
        // Enable and Multiple Message Enable.
        wmask[..2].copy_from_slice(&(MSI_ENABLE | (7 << 4)).to_le_bytes());
        // Address (dword aligned), upper address, data.
        wmask[2..6].copy_from_slice(&0xffff_fffcu32.to_le_bytes());
        wmask[6..10].fill(0xff);
        wmask[10..12].fill(0xff);
        // Mask bits for the vectors that exist.
        let n = 1u64 << vectors_log2.min(5);
        let mask = ((1u64 << n) - 1) as u32;
        wmask[14..18].copy_from_slice(&mask.to_le_bytes());
        (body, wmask)
    }

    fn reg16(cfg: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([cfg[off], cfg[off + 1]])
    }

    fn reg32(cfg: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([cfg[off], cfg[off + 1], cfg[off + 2], cfg[off + 3]])
    }

    pub fn enabled(&self, cfg: &[u8]) -> bool {
        Self::reg16(cfg, self.cap as usize + 2) & MSI_ENABLE != 0
    }

    /// Vectors the guest enabled (Multiple Message Enable, capped by what
    /// the function asked for).
    pub fn count(&self, cfg: &[u8]) -> u16 {
        let mme = ((Self::reg16(cfg, self.cap as usize + 2) >> 4) & 7) as u8;
        1 << mme.min(self.mmc)
    }

    pub fn masked(&self, cfg: &[u8], vector: u16) -> bool {
        vector >= 32 || Self::reg32(cfg, self.cap as usize + 16) & (1 << vector) != 0
    }

    /// What vector `vector` delivers when the capability is enabled and
    /// the vector unmasked.
    pub fn message(&self, cfg: &[u8], vector: u16) -> Option<MsiMessage> {
        let c = self.cap as usize;
        if !self.enabled(cfg) || vector >= self.count(cfg) || self.masked(cfg, vector) {
            return None;
        }
        let lo = u64::from(Self::reg32(cfg, c + 4));
        let hi = u64::from(Self::reg32(cfg, c + 8));
        let data = u32::from(Self::reg16(cfg, c + 12));
        // With several vectors the low data bits carry the vector number.
        let n = u32::from(self.count(cfg));
        Some(MsiMessage {
            address: (hi << 32) | lo,
            data: (data & !(n - 1)) | u32::from(vector),
        })
    }

    /// Keeps the read-only Pending Bits register in step.
    pub fn sync_pending(&self, cfg: &mut [u8]) {
        let c = self.cap as usize + 20;
        cfg[c..c + 4].copy_from_slice(&self.pending.to_le_bytes());
    }
}

/// An MSI-X capability and its table.
#[derive(Debug, Clone)]
pub struct MsiX {
    pub cap: u16,
    pub table_bar: u8,
    pub table_offset: u64,
    pub pba_bar: u8,
    pub pba_offset: u64,
    /// Each entry: address low, address high, data, vector control.
    table: Vec<[u32; 4]>,
    pba: Vec<u64>,
}

impl MsiX {
    pub const LEN: usize = 12;

    /// `vectors` entries (1 to 2048); offsets must be 8-byte aligned.
    pub fn new(
        cap: u16,
        vectors: u16,
        table_bar: u8,
        table_offset: u64,
        pba_bar: u8,
        pba_offset: u64,
    ) -> Self {
        let n = vectors.clamp(1, MSIX_MAX_VECTORS) as usize;
        MsiX {
            cap,
            table_bar,
            table_offset,
            pba_bar,
            pba_offset,
            // Entries start masked (PCI spec).
            table: vec![[0, 0, 0, MSIX_ENTRY_MASKED]; n],
            pba: vec![0; n.div_ceil(64)],
        }
    }

    pub fn body(&self) -> (Vec<u8>, Vec<u8>) {
        let ctl = (self.table.len() - 1) as u16;
        let mut body = vec![0u8; Self::LEN - 2];
        body[..2].copy_from_slice(&ctl.to_le_bytes());
        let t = (self.table_offset as u32) | u32::from(self.table_bar);
        body[2..6].copy_from_slice(&t.to_le_bytes());
        let p = (self.pba_offset as u32) | u32::from(self.pba_bar);
        body[6..10].copy_from_slice(&p.to_le_bytes());
        let mut wmask = vec![0u8; Self::LEN - 2];
        wmask[..2].copy_from_slice(&(MSIX_ENABLE | MSIX_FUNCTION_MASK).to_le_bytes());
        (body, wmask)
    }

    pub fn vectors(&self) -> u16 {
        self.table.len() as u16
    }

    pub fn table_len(&self) -> u64 {
        self.table.len() as u64 * MSIX_ENTRY_SIZE
    }

    pub fn pba_len(&self) -> u64 {
        self.pba.len() as u64 * 8
    }

    fn control(&self, cfg: &[u8]) -> u16 {
        let c = self.cap as usize + 2;
        u16::from_le_bytes([cfg[c], cfg[c + 1]])
    }

    pub fn enabled(&self, cfg: &[u8]) -> bool {
        self.control(cfg) & MSIX_ENABLE != 0
    }

    pub fn masked(&self, cfg: &[u8], vector: u16) -> bool {
        match self.table.get(vector as usize) {
            Some(e) => self.control(cfg) & MSIX_FUNCTION_MASK != 0 || e[3] & MSIX_ENTRY_MASKED != 0,
            None => true,
        }
    }

    pub fn message(&self, cfg: &[u8], vector: u16) -> Option<MsiMessage> {
        if !self.enabled(cfg) || self.masked(cfg, vector) {
            return None;
        }
        let e = self.table.get(vector as usize)?;
        Some(MsiMessage {
            address: (u64::from(e[1]) << 32) | u64::from(e[0]),
            data: e[2],
        })
    }

    pub fn set_pending(&mut self, vector: u16, on: bool) {
        if let Some(w) = self.pba.get_mut(vector as usize / 64) {
            let bit = 1u64 << (vector % 64);
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    pub fn pending(&self, vector: u16) -> bool {
        self.pba
            .get(vector as usize / 64)
            .is_some_and(|w| w & (1 << (vector % 64)) != 0)
    }

    /// Whether `bar`/`offset` falls in the table or the PBA.
    pub fn claims(&self, bar: u8, offset: u64) -> bool {
        (bar == self.table_bar
            && offset >= self.table_offset
            && offset - self.table_offset < self.table_len())
            || (bar == self.pba_bar
                && offset >= self.pba_offset
                && offset - self.pba_offset < self.pba_len())
    }

    /// A table or PBA read. Only naturally aligned 4- and 8-byte accesses
    /// are defined; anything else reads as zeros.
    pub fn read(&self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let aligned = matches!(data.len(), 4 | 8) && offset.is_multiple_of(data.len() as u64);
        if !aligned {
            return;
        }
        if bar == self.table_bar && offset >= self.table_offset {
            let rel = offset - self.table_offset;
            if rel < self.table_len() {
                let mut v = 0u64;
                for i in 0..data.len() as u64 / 4 {
                    let at = rel + i * 4;
                    let e = &self.table[(at / MSIX_ENTRY_SIZE) as usize];
                    v |= u64::from(e[((at % MSIX_ENTRY_SIZE) / 4) as usize]) << (32 * i);
                }
                super::put_le(data, v);
                return;
            }
        }
        if bar == self.pba_bar && offset >= self.pba_offset {
            let rel = offset - self.pba_offset;
            if let Some(w) = self.pba.get((rel / 8) as usize) {
                let v = if data.len() == 8 {
                    *w
                } else {
                    w >> ((rel % 8) * 8)
                };
                super::put_le(data, v);
            }
        }
    }

    /// A table write (the PBA is read-only); returns the vector whose
    /// entry changed.
    pub fn write(&mut self, bar: u8, offset: u64, data: &[u8]) -> Option<u16> {
        let aligned = matches!(data.len(), 4 | 8) && offset.is_multiple_of(data.len() as u64);
        if !aligned || bar != self.table_bar || offset < self.table_offset {
            return None;
        }
        let rel = offset - self.table_offset;
        if rel >= self.table_len() {
            return None;
        }
        let v = super::le_value(data);
        let index = rel / MSIX_ENTRY_SIZE;
        let e = &mut self.table[index as usize];
        for i in 0..data.len() as u64 / 4 {
            let word = ((rel % MSIX_ENTRY_SIZE) / 4 + i) as usize;
            let val = (v >> (32 * i)) as u32;
            e[word] = match word {
                // Only the mask bit of vector control is writable.
                3 => (e[3] & !MSIX_ENTRY_MASKED) | (val & MSIX_ENTRY_MASKED),
                _ => val,
            };
        }
        Some(index as u16)
    }

    /// Masks every entry and clears pending bits (function reset).
    pub fn reset(&mut self) {
        for e in &mut self.table {
            *e = [0, 0, 0, MSIX_ENTRY_MASKED];
        }
        self.pba.fill(0);
    }
}
