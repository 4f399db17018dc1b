//! bhyve's pc-testdev (`pctestdev.c`): the debug/test interfaces that
//! kvm-unit-tests expects.
//!
//! - isa-debug-exit, ports 0xf4..0xf7: writing `v` exits the VM with status
//!   `(v << 1) | 1`; reads return 0.
//! - a 32-bit scratch register at ports 0xe0..0xe3, byte-lane addressable.
//! - IRQ lines at ports 0x2000 + n, one per IOAPIC pin (bhyve accepts 24 to
//!   32 pins): a byte write of non-zero raises line n, zero lowers it; reads
//!   return 0. Lines below 16 are ISA IRQs (PIC and IOAPIC), the rest
//!   IOAPIC-only: the vmm's `IrqLine`s decide that.
//! - 64 KiB of scratch memory at MMIO 0xff000000.
//!
//! One device serves all four ranges: the vmm inserts the same
//! `Arc<Mutex<PcTestDev>>` at every range of [`PcTestDev::pio_ranges`] on the
//! PIO bus and at [`IOMEM_BASE`]/[`IOMEM_LEN`] on the MMIO bus; `base` tells
//! the ranges apart. Malformed accesses (bhyve fails them) are ignored and
//! read as all-ones.

use std::sync::Arc;

use crate::{BusDevice, ExitRequest, IrqLine, VmControl};

pub const DEBUGEXIT_BASE: u64 = 0xf4;
pub const DEBUGEXIT_LEN: u64 = 4;
pub const IOPORT_BASE: u64 = 0xe0;
pub const IOPORT_LEN: u64 = 4;
pub const IRQ_BASE: u64 = 0x2000;
pub const IRQ_PINCOUNT_MIN: usize = 24;
pub const IRQ_PINCOUNT_MAX: usize = 32;
pub const IOMEM_BASE: u64 = 0xff00_0000;
pub const IOMEM_LEN: u64 = 0x1_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcTestDevError {
    #[error("pc-testdev: Unsupported IOAPIC pin count: {0}.")]
    PinCount(usize),
}

pub struct PcTestDev {
    vm: Arc<dyn VmControl>,
    irqs: Vec<Arc<dyn IrqLine>>,
    ioport: [u8; IOPORT_LEN as usize],
    iomem: Vec<u8>,
}

fn le_value(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .rev()
        .fold(0, |v, b| (v << 8) | u32::from(*b))
}

impl PcTestDev {
    /// `irqs[n]` is the line driven by port `IRQ_BASE + n`; there must be
    /// one per IOAPIC pin, 24 to 32 as bhyve requires.
    pub fn new(
        vm: Arc<dyn VmControl>,
        irqs: Vec<Arc<dyn IrqLine>>,
    ) -> Result<Self, PcTestDevError> {
        if !(IRQ_PINCOUNT_MIN..=IRQ_PINCOUNT_MAX).contains(&irqs.len()) {
            return Err(PcTestDevError::PinCount(irqs.len()));
        }
        Ok(PcTestDev {
            vm,
            irqs,
            ioport: [0; IOPORT_LEN as usize],
            iomem: vec![0; IOMEM_LEN as usize],
        })
    }

    /// The (base, len) port ranges to insert on the PIO bus.
    pub fn pio_ranges(&self) -> [(u64, u64); 3] {
        [
            (DEBUGEXIT_BASE, DEBUGEXIT_LEN),
            (IOPORT_BASE, IOPORT_LEN),
            (IRQ_BASE, self.irqs.len() as u64),
        ]
    }

    /// The (base, len) range to insert on the MMIO bus.
    pub fn mmio_range(&self) -> (u64, u64) {
        (IOMEM_BASE, IOMEM_LEN)
    }

    /// Byte range inside a region of `len` bytes, or None if out of bounds.
    fn span(offset: u64, size: usize, len: u64) -> Option<std::ops::Range<usize>> {
        let end = offset.checked_add(size as u64)?;
        (end <= len).then_some(offset as usize..end as usize)
    }
}

impl BusDevice for PcTestDev {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        match base {
            DEBUGEXIT_BASE => data.fill(0),
            IOPORT_BASE => match Self::span(offset, data.len(), IOPORT_LEN) {
                Some(r) => data.copy_from_slice(&self.ioport[r]),
                None => data.fill(0xff),
            },
            IRQ_BASE if data.len() == 1 => data.fill(0),
            IOMEM_BASE => match Self::span(offset, data.len(), IOMEM_LEN) {
                Some(r) => data.copy_from_slice(&self.iomem[r]),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        match base {
            DEBUGEXIT_BASE => {
                let v = le_value(data);
                self.vm
                    .request_exit(ExitRequest::Status((v.wrapping_shl(1) | 1) as i32));
            }
            IOPORT_BASE => {
                if let Some(r) = Self::span(offset, data.len(), IOPORT_LEN) {
                    self.ioport[r].copy_from_slice(data);
                }
            }
            IRQ_BASE if data.len() == 1 => {
                if let Some(line) = usize::try_from(offset).ok().and_then(|n| self.irqs.get(n)) {
                    line.set_level(data[0] != 0);
                }
            }
            IOMEM_BASE => {
                if let Some(r) = Self::span(offset, data.len(), IOMEM_LEN) {
                    self.iomem[r].copy_from_slice(data);
                }
            }
            _ => log::debug!(
                "pc-testdev: ignoring {}-byte write at {base:#x}+{offset:#x}",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RecIrq, RecVm};

    fn dev(pins: usize) -> (PcTestDev, Arc<RecVm>, Vec<Arc<RecIrq>>) {
        let vm = RecVm::new();
        let recs: Vec<Arc<RecIrq>> = (0..pins).map(|_| RecIrq::new()).collect();
        let lines = recs.iter().map(|r| r.clone() as Arc<dyn IrqLine>).collect();
        (PcTestDev::new(vm.clone(), lines).unwrap(), vm, recs)
    }

    #[test]
    fn debug_exit_statuses() {
        let (mut d, vm, _) = dev(24);
        d.write(DEBUGEXIT_BASE, 0, &[0]);
        d.write(DEBUGEXIT_BASE, 0, &[0x10]);
        d.write(DEBUGEXIT_BASE, 0, &[0x34, 0x12]);
        d.write(DEBUGEXIT_BASE, 2, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            vm.exits(),
            vec![
                ExitRequest::Status(1),
                ExitRequest::Status(0x21),
                ExitRequest::Status(0x2469),
                ExitRequest::Status(-1),
            ]
        );
        let mut b = [0xaau8; 4];
        d.read(DEBUGEXIT_BASE, 0, &mut b);
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn ioport_scratch_byte_lanes() {
        let (mut d, _, _) = dev(24);
        d.write(IOPORT_BASE, 0, &[0x78, 0x56, 0x34, 0x12]);
        let mut b4 = [0u8; 4];
        d.read(IOPORT_BASE, 0, &mut b4);
        assert_eq!(u32::from_le_bytes(b4), 0x1234_5678);
        d.write(IOPORT_BASE, 2, &[0xcd, 0xab]);
        d.write(IOPORT_BASE, 1, &[0xee]);
        d.read(IOPORT_BASE, 0, &mut b4);
        assert_eq!(u32::from_le_bytes(b4), 0xabcd_ee78);
        let mut b2 = [0u8; 2];
        d.read(IOPORT_BASE, 1, &mut b2);
        assert_eq!(b2, [0xee, 0xcd]);
        // Crossing the end of the register: ignored, floats.
        d.write(IOPORT_BASE, 3, &[1, 2]);
        d.read(IOPORT_BASE, 3, &mut b2);
        assert_eq!(b2, [0xff, 0xff]);
        d.read(IOPORT_BASE, 0, &mut b4);
        assert_eq!(u32::from_le_bytes(b4), 0xabcd_ee78);
    }

    #[test]
    fn irq_lines() {
        let (mut d, _, recs) = dev(24);
        assert_eq!(d.pio_ranges()[2], (IRQ_BASE, 24));
        d.write(IRQ_BASE, 10, &[1]);
        d.write(IRQ_BASE, 20, &[0x80]);
        d.write(IRQ_BASE, 10, &[0]);
        d.write(IRQ_BASE, 5, &[1, 0]); // not a byte access: ignored
        d.write(IRQ_BASE, 24, &[1]); // past the last pin: ignored
        assert_eq!(recs[10].history(), vec![true, false]);
        assert_eq!(recs[20].history(), vec![true]);
        assert!(recs[5].history().is_empty());
        let mut b = [0xaau8; 1];
        d.read(IRQ_BASE, 10, &mut b);
        assert_eq!(b, [0]);
    }

    #[test]
    fn pin_count_limits() {
        let vm = RecVm::new();
        let line = |_| RecIrq::new() as Arc<dyn IrqLine>;
        assert_eq!(
            PcTestDev::new(vm.clone(), (0..16).map(line).collect()).err(),
            Some(PcTestDevError::PinCount(16))
        );
        assert!(PcTestDev::new(vm.clone(), (0..33).map(line).collect()).is_err());
        assert!(PcTestDev::new(vm, (0..32).map(line).collect()).is_ok());
    }

    #[test]
    fn iomem_scratch() {
        let (mut d, _, _) = dev(24);
        assert_eq!(d.mmio_range(), (0xff00_0000, 0x10000));
        d.write(IOMEM_BASE, 0x100, &0x1122_3344_5566_7788u64.to_le_bytes());
        d.write(IOMEM_BASE, 0xffff, &[0x5a]);
        let mut q = [0u8; 8];
        d.read(IOMEM_BASE, 0x100, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1122_3344_5566_7788);
        let mut b = [0u8; 1];
        d.read(IOMEM_BASE, 0xffff, &mut b);
        assert_eq!(b, [0x5a]);
        // Crossing the end: no write, all-ones read, no panic.
        d.write(IOMEM_BASE, 0xfffe, &[1, 2, 3, 4]);
        let mut w = [0u8; 4];
        d.read(IOMEM_BASE, 0xfffe, &mut w);
        assert_eq!(w, [0xff; 4]);
        d.read(IOMEM_BASE, u64::MAX, &mut w);
        assert_eq!(w, [0xff; 4]);
        d.read(IOMEM_BASE, 0xffff, &mut b);
        assert_eq!(b, [0x5a]);
    }
}
