//! Resource descriptors for `_CRS`/`_PRS` buffers (ACPI 6.5 §6.4): the
//! small ISA descriptors (IO, IRQ, End Tag) and the large ones a PCI
//! host bridge produces (Memory32Fixed, Word/DWord/QWord address
//! spaces).

use super::aml::buffer;
use super::AcpiError;

/// Small resource tags, byte 0 = tag << 3 | length.
const IRQ_NO_FLAGS: u8 = 0x22;
const IRQ_FLAGS: u8 = 0x23;
const IO_PORT: u8 = 0x47;
const END_TAG: u8 = 0x79;
/// Large resource tags (followed by a 16-bit length).
const MEMORY32_FIXED: u8 = 0x86;
const DWORD_ADDRESS: u8 = 0x87;
const WORD_ADDRESS: u8 = 0x88;
const QWORD_ADDRESS: u8 = 0x8a;

/// Address space descriptor resource types.
const SPACE_MEMORY: u8 = 0;
const SPACE_IO: u8 = 1;
const SPACE_BUS: u8 = 2;
/// General flags of what a bridge hands down: ResourceProducer (bit 0
/// clear), PosDecode (bit 1 clear), MinFixed (bit 2), MaxFixed (bit 3).
const PRODUCER_FIXED: u8 = 0x0c;
/// I/O type flags: EntireRange (ISA and non-ISA ports), TypeStatic.
const IO_ENTIRE_RANGE: u8 = 0x03;
/// Memory type flags: ReadWrite, NonCacheable, AddressRangeMemory,
/// TypeStatic.
const MEM_RW_NONCACHEABLE: u8 = 0x01;

/// IRQ descriptor information byte.
pub mod irq_flags {
    /// Edge-triggered (clear: level).
    pub const EDGE: u8 = 1 << 0;
    /// Active-low (clear: active-high).
    pub const ACTIVE_LOW: u8 = 1 << 3;
    /// Shared (clear: exclusive).
    pub const SHARED: u8 = 1 << 4;
    /// `IRQ (Level, ActiveLow, Shared)`: a PCI interrupt link.
    pub const PCI_LINK: u8 = ACTIVE_LOW | SHARED;
}

/// Resource descriptors, closed by an End Tag when built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceTemplate(Vec<u8>);

impl ResourceTemplate {
    pub fn new() -> Self {
        Self::default()
    }

    /// `IO (Decode16, base, base, 1, len)`: a fixed port range.
    pub fn io(mut self, base: u16, len: u8) -> Self {
        let b = base.to_le_bytes();
        self.0
            .extend_from_slice(&[IO_PORT, 0x01, b[0], b[1], b[0], b[1], 0x01, len]);
        self
    }

    /// `IRQNoFlags () {irq}`: an ISA IRQ (edge, active-high, exclusive).
    pub fn irq_no_flags(mut self, irq: u8) -> Self {
        let mask = irq_mask(&[irq]).to_le_bytes();
        self.0.extend_from_slice(&[IRQ_NO_FLAGS, mask[0], mask[1]]);
        self
    }

    /// `IRQ (...) {irqs}` with an information byte from [`irq_flags`];
    /// IRQs above 15 are not representable and are left out.
    pub fn irq(mut self, flags: u8, irqs: &[u8]) -> Self {
        let mask = irq_mask(irqs).to_le_bytes();
        self.0
            .extend_from_slice(&[IRQ_FLAGS, mask[0], mask[1], flags]);
        self
    }

    /// `Memory32Fixed (ReadWrite, base, len)`.
    pub fn memory32_fixed(mut self, base: u32, len: u32) -> Self {
        self.0
            .extend_from_slice(&[MEMORY32_FIXED, 0x09, 0x00, 0x01]);
        self.0.extend_from_slice(&base.to_le_bytes());
        self.0.extend_from_slice(&len.to_le_bytes());
        self
    }

    /// Large address space descriptor: tag, length, type, flags, then
    /// granularity 0, minimum, maximum, translation 0, length.
    fn address(
        mut self,
        tag: u8,
        space: u8,
        type_flags: u8,
        size: usize,
        min: u64,
        max: u64,
    ) -> Self {
        let len = (3 + 5 * size) as u16;
        self.0.push(tag);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0
            .extend_from_slice(&[space, PRODUCER_FIXED, type_flags]);
        let span = max.wrapping_sub(min).wrapping_add(1);
        for v in [0, min, max, 0, span] {
            self.0.extend_from_slice(&v.to_le_bytes()[..size]);
        }
        self
    }

    /// `WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
    /// 0, first, last, 0, last - first + 1)`.
    pub fn word_bus_number(self, first: u16, last: u16) -> Self {
        self.address(WORD_ADDRESS, SPACE_BUS, 0, 2, first.into(), last.into())
    }

    /// `WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode,
    /// EntireRange, 0, min, max, 0, len)`; `max` is inclusive.
    pub fn word_io(self, min: u16, max: u16) -> Self {
        self.address(
            WORD_ADDRESS,
            SPACE_IO,
            IO_ENTIRE_RANGE,
            2,
            min.into(),
            max.into(),
        )
    }

    /// `DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,
    /// NonCacheable, ReadWrite, 0, min, max, 0, len)`; `max` inclusive.
    pub fn dword_memory(self, min: u32, max: u32) -> Self {
        let f = MEM_RW_NONCACHEABLE;
        self.address(DWORD_ADDRESS, SPACE_MEMORY, f, 4, min.into(), max.into())
    }

    /// `QWordMemory (...)`, as [`Self::dword_memory`] with 64-bit fields.
    pub fn qword_memory(self, min: u64, max: u64) -> Self {
        let f = MEM_RW_NONCACHEABLE;
        self.address(QWORD_ADDRESS, SPACE_MEMORY, f, 8, min, max)
    }

    /// The template as a Buffer term (End Tag with checksum 0, which
    /// means "no checksum").
    pub fn build(&self) -> Result<Vec<u8>, AcpiError> {
        let mut b = self.0.clone();
        b.extend_from_slice(&[END_TAG, 0x00]);
        buffer(&b)
    }
}

fn irq_mask(irqs: &[u8]) -> u16 {
    irqs.iter()
        .fold(0, |m, i| m | 1u16.checked_shl(u32::from(*i)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The descriptor bytes, without the Buffer wrapper and End Tag.
    fn raw(t: ResourceTemplate) -> Vec<u8> {
        t.0
    }

    #[test]
    fn small_descriptors() {
        let crs = ResourceTemplate::new()
            .io(0x70, 2)
            .irq_no_flags(8)
            .build()
            .unwrap();
        assert_eq!(
            crs,
            [
                0x11, 0x10, 0x0a, 0x0d, // Buffer, PkgLength 16, size 13
                0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, // IO
                0x22, 0x00, 0x01, // IRQ 8
                0x79, 0x00, // End Tag
            ]
        );
        // IRQ (Level, ActiveLow, Shared) {3,4,5,6,7,9,10,11,12,14,15}:
        // mask 0xdef8, information byte 0x18 (ACPI 6.5 table 6.28).
        let prs = [3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15];
        assert_eq!(
            raw(ResourceTemplate::new().irq(irq_flags::PCI_LINK, &prs)),
            [0x23, 0xf8, 0xde, 0x18]
        );
        assert_eq!(
            raw(ResourceTemplate::new().irq(irq_flags::PCI_LINK, &[])),
            [0x23, 0, 0, 0x18]
        );
        // An IRQ a 16-bit mask cannot hold is dropped, not wrapped.
        assert_eq!(raw(ResourceTemplate::new().irq_no_flags(16)), [0x22, 0, 0]);
    }

    #[test]
    fn address_space_descriptors() {
        // WordBusNumber 0..255: type 2, flags 0x0c, length 0x100.
        assert_eq!(
            raw(ResourceTemplate::new().word_bus_number(0, 0xff)),
            [0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0xff, 0, 0, 0, 0x00, 0x01]
        );
        // WordIO 0x0d00..0x1fff, EntireRange.
        assert_eq!(
            raw(ResourceTemplate::new().word_io(0xd00, 0x1fff)),
            [0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0, 0x0d, 0xff, 0x1f, 0, 0, 0x00, 0x13]
        );
        let d = raw(ResourceTemplate::new().dword_memory(0xc000_0000, 0xdfff_ffff));
        assert_eq!(d.len(), 3 + 23);
        assert_eq!(&d[..6], [0x87, 0x17, 0x00, 0x00, 0x0c, 0x01]);
        assert_eq!(&d[10..14], 0xc000_0000u32.to_le_bytes());
        assert_eq!(&d[14..18], 0xdfff_ffffu32.to_le_bytes());
        assert_eq!(&d[22..26], 0x2000_0000u32.to_le_bytes());
        let q = raw(ResourceTemplate::new().qword_memory(32 << 30, (64 << 30) - 1));
        assert_eq!(q.len(), 3 + 43);
        assert_eq!(&q[..6], [0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x01]);
        assert_eq!(&q[14..22], (32u64 << 30).to_le_bytes());
        assert_eq!(&q[38..46], (32u64 << 30).to_le_bytes());
    }
}
