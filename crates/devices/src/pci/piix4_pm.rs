//! QEMU's PIIX4 power-management function (8086:7113 at 0:1.3 on QEMU's
//! `pc` machine): our extension (`-s 1:3,piix4-pm`), not a bhyve device.
//!
//! Firmware built for QEMU's i440FX (OVMF's PlatformPei and AcpiTimerLib,
//! SeaBIOS) finds the ACPI PM block through this function: PMBA (config
//! 0x40, I/O base in bits 15:6, bit 0 reads 1) and PMREGMISC (0x80, bit 0
//! PMIOSE: the block decodes). Our ACPI PM block ([`crate::AcpiPm`]) is
//! the block it names; moving PMBA moves the block on the port bus.
//!
//! The function comes up with PMBA at the platform's PM base (`pm.base`)
//! and PMIOSE set, as a BIOS would have left it: OVMF then keeps the block
//! where our FADT (built once, at start) says it is instead of moving it
//! to its own default (0xb000). A guest may still move or disable it.

use std::sync::{Arc, Mutex};

use super::config::{PciConfig, PciId, CLASS_BRIDGE};
use super::PciDevice;
use crate::acpi_pm::{AcpiPm, SMI_CMD_PORT};
use crate::bus::Bus;

pub const PIIX4_PM_VENDOR: u16 = 0x8086;
pub const PIIX4_PM_DEVICE: u16 = 0x7113;
/// QEMU's revision and subsystem for the function.
pub const PIIX4_PM_REVISION: u8 = 0x03;
const SUBCLASS_OTHER: u8 = 0x80;

/// PM base address register and its writable base bits (15:6).
pub const PMBA: u16 = 0x40;
pub const PMBA_MASK: u32 = 0xffc0;
/// Resource type indicator: I/O space (read-only 1).
const PMBA_RTE: u32 = 1;
/// Miscellaneous power-management register; bit 0 enables the block.
pub const PMREGMISC: u16 = 0x80;
pub const PMREGMISC_PMIOSE: u8 = 1;

/// Where the ACPI PM registers decode; the platform moves them.
pub trait PmIoDecoder: Send + Sync {
    /// Decode the block at `base`, or nowhere (`None`).
    fn decode_at(&self, base: Option<u16>);
}

/// Moves an [`AcpiPm`]'s PM1/PM-timer ranges on a port bus (SMI_CMD at
/// 0xb2 stays: it is not part of the PMBA block).
pub struct AcpiPmDecoder {
    pio: Arc<Bus>,
    pm: Arc<Mutex<AcpiPm>>,
    /// The base the ranges are inserted at now.
    mapped: Mutex<Option<u64>>,
}

impl AcpiPmDecoder {
    /// `pm`'s ranges are already on `pio` at its current base.
    pub fn new(pio: Arc<Bus>, pm: Arc<Mutex<AcpiPm>>) -> Self {
        let base = pm.lock().unwrap_or_else(|e| e.into_inner()).ranges()[0].0;
        AcpiPmDecoder {
            pio,
            pm,
            mapped: Mutex::new(Some(base)),
        }
    }

    fn movable(pm: &AcpiPm) -> Vec<(u64, u64)> {
        pm.ranges()
            .into_iter()
            .filter(|(b, _)| *b != SMI_CMD_PORT)
            .collect()
    }
}

impl PmIoDecoder for AcpiPmDecoder {
    fn decode_at(&self, base: Option<u16>) {
        let mut mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        let want = base.map(u64::from);
        if *mapped == want {
            return;
        }
        let mut pm = self.pm.lock().unwrap_or_else(|e| e.into_inner());
        if mapped.is_some() {
            for (b, _) in Self::movable(&pm) {
                self.pio.remove(b);
            }
            *mapped = None;
        }
        let Some(new) = want else { return };
        pm.set_base(new);
        let ranges = Self::movable(&pm);
        drop(pm);
        let dev: crate::bus::SharedDevice = self.pm.clone();
        for (i, &(b, len)) in ranges.iter().enumerate() {
            if let Err(e) = self.pio.insert(b, len, dev.clone()) {
                // The guest put the block over another device: it does
                // not decode (the other device keeps its ports).
                log::warn!("piix4-pm: PM block at {new:#x} not decoded: {e}");
                for &(b, _) in &ranges[..i] {
                    self.pio.remove(b);
                }
                return;
            }
        }
        log::debug!("piix4-pm: PM block at {new:#x}");
        *mapped = Some(new);
    }
}

pub struct Piix4Pm {
    config: PciConfig,
    decoder: Arc<dyn PmIoDecoder>,
}

impl Piix4Pm {
    /// `pm_base`: where the PM block decodes now (PMBA's reset value
    /// here; its low 6 bits are not representable and dropped).
    pub fn new(id: PciId, decoder: Arc<dyn PmIoDecoder>, pm_base: u16) -> Self {
        let mut config = PciConfig::new(PciId {
            class: CLASS_BRIDGE,
            subclass: SUBCLASS_OTHER,
            prog_if: 0,
            ..id
        });
        let pmba = (u32::from(pm_base) & PMBA_MASK) | PMBA_RTE;
        for (i, b) in pmba.to_le_bytes().into_iter().enumerate() {
            config.set_byte(PMBA as u8 + i as u8, b);
        }
        config.set_writable(PMBA as u8, (PMBA_MASK & 0xff) as u8);
        config.set_writable(PMBA as u8 + 1, (PMBA_MASK >> 8) as u8);
        config.set_byte(PMREGMISC as u8, PMREGMISC_PMIOSE);
        config.set_writable(PMREGMISC as u8, PMREGMISC_PMIOSE);
        Piix4Pm { config, decoder }
    }

    /// QEMU's identity for the function.
    pub fn qemu_id() -> PciId {
        PciId {
            vendor: PIIX4_PM_VENDOR,
            device: PIIX4_PM_DEVICE,
            revision: PIIX4_PM_REVISION,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
            ..PciId::default()
        }
    }

    /// The base the registers name, if the block decodes.
    pub fn decoded_base(&self) -> Option<u16> {
        let mut b = [0u8; 4];
        self.config.read(PMBA, &mut b);
        let mut misc = [0u8];
        self.config.read(PMREGMISC, &mut misc);
        (misc[0] & PMREGMISC_PMIOSE != 0).then(|| (u32::from_le_bytes(b) & PMBA_MASK) as u16)
    }

    fn touches_pm(off: u16, len: usize) -> bool {
        let end = u32::from(off) + len as u32;
        let hits = |reg: u16, n: u32| u32::from(off) < u32::from(reg) + n && end > u32::from(reg);
        hits(PMBA, 4) || hits(PMREGMISC, 1)
    }
}

impl PciDevice for Piix4Pm {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn cfg_write(&mut self, offset: u16, data: &[u8]) -> bool {
        if !Self::touches_pm(offset, data.len()) {
            return false;
        }
        let before = self.decoded_base();
        self.config.write(offset, data);
        let after = self.decoded_base();
        if before != after {
            self.decoder.decode_at(after);
        }
        true
    }

    fn reset(&mut self) {
        // The root restored the header (PMBA and PMREGMISC included).
        self.decoder.decode_at(self.decoded_base());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RecIrq, RecVm};
    use crate::timer::ManualClock;

    #[derive(Default)]
    struct RecDecoder(Mutex<Vec<Option<u16>>>);

    impl PmIoDecoder for RecDecoder {
        fn decode_at(&self, base: Option<u16>) {
            self.0.lock().unwrap().push(base);
        }
    }

    struct NoIrq;
    impl crate::pci::PciInterrupts for NoIrq {
        fn set_intx(&self, _: bool) {}
        fn route_msi(&self, _: u16, _: Option<crate::pci::MsiMessage>) {}
        fn fire_msi(&self, _: u16) {}
    }

    fn rd(d: &Piix4Pm, off: u16, n: usize) -> u32 {
        let mut b = [0u8; 4];
        d.config().read(off, &mut b[..n]);
        u32::from_le_bytes(b)
    }

    #[test]
    fn comes_up_decoding_at_the_platform_base() {
        let rec = Arc::new(RecDecoder::default());
        let d = Piix4Pm::new(Piix4Pm::qemu_id(), rec.clone(), 0x600);
        assert_eq!(rd(&d, 0, 4), 0x7113_8086);
        assert_eq!(rd(&d, 0x08, 4), 0x0680_0003);
        assert_eq!(rd(&d, PMBA, 4), 0x601);
        assert_eq!(rd(&d, PMREGMISC, 1), 1);
        assert_eq!(d.decoded_base(), Some(0x600));
        assert!(rec.0.lock().unwrap().is_empty());
    }

    #[test]
    fn ovmf_programming_moves_the_block() {
        let rec = Arc::new(RecDecoder::default());
        let mut d = Piix4Pm::new(Piix4Pm::qemu_id(), rec.clone(), 0x600);
        // As the root attaches it (the header reset restores from here).
        d.config_mut().set_interrupts(Arc::new(NoIrq));
        // OVMF: clear PMIOSE (as if fresh), PMBA &= ~mask | 0xb000, then
        // PMIOSE again.
        assert!(d.cfg_write(PMREGMISC, &[0]));
        assert!(d.cfg_write(PMBA, &0xffff_b03fu32.to_le_bytes()));
        assert_eq!(rd(&d, PMBA, 4), 0xb001, "only bits 15:6 are writable");
        assert!(d.cfg_write(PMREGMISC, &[0xff]));
        assert_eq!(rd(&d, PMREGMISC, 1), 1);
        assert_eq!(*rec.0.lock().unwrap(), vec![None, Some(0xb000)]);
        // Other registers are the generic header's.
        assert!(!d.cfg_write(0x3c, &[5]));
        // A byte write inside PMBA's high byte moves it again.
        assert!(d.cfg_write(PMBA + 1, &[0x07]));
        assert_eq!(rec.0.lock().unwrap().last(), Some(&Some(0x0700)));
        d.config_mut().reset();
        d.reset();
        assert_eq!(rec.0.lock().unwrap().last(), Some(&Some(0x600)));
    }

    #[test]
    fn decoder_moves_acpi_pm_ranges_and_refuses_overlaps() {
        let pio = Arc::new(Bus::new());
        let pm = Arc::new(Mutex::new(AcpiPm::new(
            RecVm::new(),
            RecIrq::new(),
            ManualClock::new(),
        )));
        pm.lock().unwrap().set_base(0x600);
        for (b, len) in pm.lock().unwrap().ranges() {
            pio.insert(b, len, pm.clone()).unwrap();
        }
        let dec = AcpiPmDecoder::new(pio.clone(), pm.clone());
        let rd16 = |port: u64| {
            let mut b = [0u8; 2];
            pio.read(port, &mut b).then(|| u16::from_le_bytes(b))
        };
        assert!(rd16(0x604).is_some());
        dec.decode_at(Some(0xb000));
        assert_eq!(rd16(0x604), None);
        assert!(rd16(0xb004).is_some());
        let mut t = [0u8; 4];
        assert!(pio.read(0xb008, &mut t), "PM timer at base + 8");
        assert!(pio.read(SMI_CMD_PORT, &mut [0u8]), "SMI_CMD stays");
        dec.decode_at(None);
        assert_eq!(rd16(0xb004), None);
        // Over someone else's ports: not decoded, theirs untouched.
        struct Other;
        impl crate::BusDevice for Other {
            fn read(&mut self, _: u64, _: u64, d: &mut [u8]) {
                d.fill(0x5a);
            }
            fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
        }
        pio.insert(0x3f8, 8, Arc::new(Mutex::new(Other))).unwrap();
        // PM timer (base + 8) on 0x3f8.
        dec.decode_at(Some(0x3f0));
        assert_eq!(rd16(0x3f0), None, "PM1 event block not left behind");
        assert_eq!(rd16(0x3f8), Some(0x5a5a));
        dec.decode_at(Some(0x600));
        assert!(rd16(0x604).is_some());
    }
}
