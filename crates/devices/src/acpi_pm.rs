//! ACPI fixed hardware as bhyve provides it (`pm.c`, `acpi.h`, and the
//! PM timer of the in-kernel `vpmtmr.c`):
//!
//! | port | register | access |
//! |---|---|---|
//! | 0x400 | PM1a_STS: write 1 to clear WAK, RTC, SLPBTN, PWRBTN, BM | 2 bytes |
//! | 0x402 | PM1a_EN: only PWRBTN_EN, GBL_EN and RTC_EN stick | 2 bytes |
//! | 0x404 | PM1a_CNT: SCI_EN (read-only), SLP_TYP; SLP_EN with SLP_TYP 5 is S5 | 2 bytes |
//! | 0x408 | PM_TMR: free-running 32-bit counter at 3.579545 MHz, read-only | 4 bytes |
//! | 0xb2 | SMI_CMD: 0xa0 sets SCI_EN (ACPI enable), 0xa1 clears it | 1 byte, write |
//!
//! The SCI is ISA IRQ 9, level-triggered and active-low (the MADT says
//! so). `KVM_IRQ_LINE` takes the logical level, not the wire's: KVM's
//! I/O APIC and PIC ignore the polarity bit and count 1 as asserted, so
//! the SCI is driven with `set_level(true)` while asserted. It is
//! asserted while SCI_EN is set and an enabled status bit is set; bhyve
//! does not look at SCI_EN, which only matters to a guest that enables
//! events before ACPI (an SMI platform would not raise the SCI then).
//!
//! The power button: [`AcpiPm::press_power_button`] sets PWRBTN_STS if
//! the guest enabled ACPI (bhyve turns SIGTERM into the button only
//! after ACPI_ENABLE, and back after ACPI_DISABLE).
//!
//! Accesses of another size (or reads of SMI_CMD, writes of PM_TMR),
//! which bhyve fails, are ignored and read as all-ones.

use std::sync::Arc;

use crate::timer::{ns_to_ticks, Clock};
use crate::{BusDevice, ExitRequest, IrqLine, VmControl};

pub const SCI_IRQ: u32 = 9;
pub const SMI_CMD_PORT: u64 = 0xb2;
pub const ACPI_ENABLE: u8 = 0xa0;
pub const ACPI_DISABLE: u8 = 0xa1;
pub const PM1A_EVT_PORT: u64 = 0x400;
pub const PM1A_EVT_LEN: u64 = 4;
pub const PM1A_CNT_PORT: u64 = 0x404;
pub const PM1A_CNT_LEN: u64 = 2;
pub const PM_TMR_PORT: u64 = 0x408;
pub const PM_TMR_LEN: u64 = 4;
pub const PM_TMR_FREQ: u64 = 3_579_545;
/// The SLP_TYP value bhyve's `_S5` package names.
pub const SLP_TYP_S5: u16 = 5;

pub const PM1_TMR_STS: u16 = 1 << 0;
pub const PM1_BM_STS: u16 = 1 << 4;
pub const PM1_GBL_STS: u16 = 1 << 5;
pub const PM1_PWRBTN_STS: u16 = 1 << 8;
pub const PM1_SLPBTN_STS: u16 = 1 << 9;
pub const PM1_RTC_STS: u16 = 1 << 10;
pub const PM1_WAK_STS: u16 = 1 << 15;
pub const PM1_GBL_EN: u16 = 1 << 5;
pub const PM1_PWRBTN_EN: u16 = 1 << 8;

pub const PM1_SCI_EN: u16 = 1 << 0;
pub const PM1_SLP_TYP: u16 = 7 << 10;
pub const PM1_SLP_EN: u16 = 1 << 13;
/// Bits of PM1_CNT that always read 0 (BM_RLD, GBL_RLS, reserved) or
/// that the guest cannot write (SCI_EN).
const PM1_CNT_FIXED: u16 = 0xc003;

const STS_W1C: u16 = PM1_WAK_STS | PM1_RTC_STS | PM1_SLPBTN_STS | PM1_PWRBTN_STS | PM1_BM_STS;
/// RTC_EN sticks too (bhyve drops it): ACPICA enables the fixed RTC
/// event for Linux's rtc-cmos and logs an ACPI error when the bit does
/// not read back. RTC_STS is never raised: there is no wake from sleep.
pub const PM1_RTC_EN: u16 = 1 << 10;
const EN_WRITABLE: u16 = PM1_PWRBTN_EN | PM1_GBL_EN | PM1_RTC_EN;
/// Status bits that have an enable bit at the same position.
const STS_EVENTS: u16 = PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_SLPBTN_STS | PM1_RTC_STS;

pub struct AcpiPm {
    vm: Arc<dyn VmControl>,
    sci: Arc<dyn IrqLine>,
    clock: Arc<dyn Clock>,
    /// The clock when the PM timer read 0.
    tmr_base_ns: u64,
    status: u16,
    enable: u16,
    control: u16,
    sci_high: bool,
    /// Where the PM1/PM timer block starts (bhyve: 0x400).
    pm_base: u64,
}

impl AcpiPm {
    /// `sci` is ISA IRQ [`SCI_IRQ`]; the PM timer starts at 0 now.
    pub fn new(vm: Arc<dyn VmControl>, sci: Arc<dyn IrqLine>, clock: Arc<dyn Clock>) -> Self {
        let tmr_base_ns = clock.now_ns();
        Self {
            vm,
            sci,
            clock,
            tmr_base_ns,
            status: 0,
            enable: 0,
            control: 0,
            sci_high: false,
            pm_base: PM1A_EVT_PORT,
        }
    }

    /// Moves the PM1/PM-timer block (same layout) to `base`: firmware
    /// built for QEMU owns port 0x402 (its debug console), inside bhyve's
    /// block; QEMU's PIIX4 puts the block at 0x600.
    pub fn set_base(&mut self, base: u64) {
        self.pm_base = base;
    }

    /// The (base, len) port ranges to insert on the PIO bus.
    pub fn ranges(&self) -> [(u64, u64); 4] {
        let at = |port: u64| port - PM1A_EVT_PORT + self.pm_base;
        [
            (at(PM1A_EVT_PORT), PM1A_EVT_LEN),
            (at(PM1A_CNT_PORT), PM1A_CNT_LEN),
            (at(PM_TMR_PORT), PM_TMR_LEN),
            (SMI_CMD_PORT, 1),
        ]
    }

    /// The register block `base` names, in bhyve's numbering.
    fn reg(&self, base: u64) -> u64 {
        if base == SMI_CMD_PORT {
            base
        } else {
            base.wrapping_sub(self.pm_base).wrapping_add(PM1A_EVT_PORT)
        }
    }

    /// Whether the guest has enabled ACPI (SCI_EN).
    pub fn acpi_enabled(&self) -> bool {
        self.control & PM1_SCI_EN != 0
    }

    /// Presses the power button: sets PWRBTN_STS (and so raises the SCI
    /// if the guest enabled PWRBTN_EN). Returns false, changing nothing,
    /// when the guest has not enabled ACPI: nobody would hear it.
    pub fn press_power_button(&mut self) -> bool {
        if !self.acpi_enabled() {
            return false;
        }
        self.status |= PM1_PWRBTN_STS;
        self.update_sci();
        true
    }

    pub fn pm_timer(&self) -> u32 {
        let ns = self.clock.now_ns().saturating_sub(self.tmr_base_ns);
        ns_to_ticks(ns, PM_TMR_FREQ) as u32
    }

    fn update_sci(&mut self) {
        let want = self.acpi_enabled() && self.status & self.enable & STS_EVENTS != 0;
        if want != self.sci_high {
            self.sci_high = want;
            self.sci.set_level(want);
        }
    }

    fn write_control(&mut self, v: u16) {
        self.control = (self.control & PM1_SCI_EN) | (v & !(PM1_SLP_EN | PM1_CNT_FIXED));
        if v & PM1_SLP_EN != 0 {
            let typ = (self.control & PM1_SLP_TYP) >> 10;
            if typ == SLP_TYP_S5 {
                self.vm.request_exit(ExitRequest::PowerOff);
            } else {
                log::debug!("acpi: ignoring sleep to SLP_TYP {typ}");
            }
        }
    }

    fn smi_cmd(&mut self, cmd: u8) {
        match cmd {
            ACPI_ENABLE => self.control |= PM1_SCI_EN,
            ACPI_DISABLE => self.control &= !PM1_SCI_EN,
            _ => return,
        }
        self.update_sci();
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let v: Option<u32> = match (self.reg(base), offset, data.len()) {
            (PM1A_EVT_PORT, 0, 2) => Some(self.status.into()),
            (PM1A_EVT_PORT, 2, 2) => Some(self.enable.into()),
            (PM1A_CNT_PORT, 0, 2) => Some(self.control.into()),
            (PM_TMR_PORT, 0, 4) => Some(self.pm_timer()),
            _ => None,
        };
        match v {
            Some(v) => data.copy_from_slice(&v.to_le_bytes()[..data.len()]),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let v16 = || u16::from_le_bytes([data[0], data[1]]);
        match (self.reg(base), offset, data.len()) {
            (PM1A_EVT_PORT, 0, 2) => {
                self.status &= !(v16() & STS_W1C);
                self.update_sci();
            }
            (PM1A_EVT_PORT, 2, 2) => {
                self.enable = v16() & EN_WRITABLE;
                self.update_sci();
            }
            (PM1A_CNT_PORT, 0, 2) => self.write_control(v16()),
            (SMI_CMD_PORT, 0, 1) => self.smi_cmd(data[0]),
            _ => log::debug!(
                "acpi: ignoring {}-byte write at {base:#x}+{offset:#x}",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RecIrq, RecVm};
    use crate::timer::ManualClock;

    fn dev() -> (AcpiPm, Arc<RecVm>, Arc<RecIrq>, Arc<ManualClock>) {
        let vm = RecVm::new();
        let sci = RecIrq::new();
        let clock = ManualClock::new();
        clock.set(1_000);
        let pm = AcpiPm::new(vm.clone(), sci.clone(), clock.clone());
        (pm, vm, sci, clock)
    }

    fn rd16(pm: &mut AcpiPm, base: u64, off: u64) -> u16 {
        let mut b = [0u8; 2];
        pm.read(base, off, &mut b);
        u16::from_le_bytes(b)
    }

    fn wr16(pm: &mut AcpiPm, base: u64, off: u64, v: u16) {
        pm.write(base, off, &v.to_le_bytes());
    }

    #[test]
    fn pm_timer_counts_at_3_579545_mhz_and_wraps() {
        let (mut pm, _, _, clock) = dev();
        let mut b = [0u8; 4];
        pm.read(PM_TMR_PORT, 0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
        clock.advance(1_000_000_000);
        pm.read(PM_TMR_PORT, 0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 3_579_545);
        clock.advance(1_000); // 3.58 ticks more
        pm.read(PM_TMR_PORT, 0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 3_579_548);
        // 2^32 ticks take ~1200 s: it wraps like a 32-bit counter.
        clock.set(1_000 + 1_200 * 1_000_000_000);
        let expect = (1_200u64 * PM_TMR_FREQ) as u32;
        assert_eq!(pm.pm_timer(), expect);
        // Not a 4-byte read at 0x408, or a write: nothing.
        let mut w = [0u8; 2];
        pm.read(PM_TMR_PORT, 0, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        pm.write(PM_TMR_PORT, 0, &[0, 0, 0, 0]);
        assert_eq!(pm.pm_timer(), expect);
    }

    #[test]
    fn status_is_write_one_to_clear_and_enable_keeps_known_bits() {
        let (mut pm, _, _, _) = dev();
        pm.write(SMI_CMD_PORT, 0, &[ACPI_ENABLE]);
        assert!(pm.press_power_button());
        assert_eq!(rd16(&mut pm, PM1A_EVT_PORT, 0), PM1_PWRBTN_STS);
        wr16(&mut pm, PM1A_EVT_PORT, 0, !PM1_PWRBTN_STS);
        assert_eq!(rd16(&mut pm, PM1A_EVT_PORT, 0), PM1_PWRBTN_STS);
        wr16(&mut pm, PM1A_EVT_PORT, 0, PM1_PWRBTN_STS);
        assert_eq!(rd16(&mut pm, PM1A_EVT_PORT, 0), 0);
        wr16(&mut pm, PM1A_EVT_PORT, 2, 0xffff);
        assert_eq!(
            rd16(&mut pm, PM1A_EVT_PORT, 2),
            PM1_PWRBTN_EN | PM1_GBL_EN | PM1_RTC_EN
        );
    }

    #[test]
    fn sci_follows_status_enable_and_sci_en() {
        let (mut pm, _, sci, _) = dev();
        // No ACPI yet: the button is not pressed and nothing is raised.
        wr16(&mut pm, PM1A_EVT_PORT, 2, PM1_PWRBTN_EN);
        assert!(!pm.press_power_button());
        assert_eq!(rd16(&mut pm, PM1A_EVT_PORT, 0), 0);
        assert!(sci.history().is_empty());
        pm.write(SMI_CMD_PORT, 0, &[ACPI_ENABLE]);
        assert_eq!(rd16(&mut pm, PM1A_CNT_PORT, 0), PM1_SCI_EN);
        assert!(pm.press_power_button());
        assert!(sci.is_high());
        // Pressing again while pending changes nothing.
        assert!(pm.press_power_button());
        assert_eq!(sci.history(), vec![true]);
        // Disabling the event lowers the SCI, enabling raises it again.
        wr16(&mut pm, PM1A_EVT_PORT, 2, 0);
        assert!(!sci.is_high());
        wr16(&mut pm, PM1A_EVT_PORT, 2, PM1_PWRBTN_EN);
        assert!(sci.is_high());
        // ACPI_DISABLE: SCI_EN off, the line drops, the button is gone.
        pm.write(SMI_CMD_PORT, 0, &[ACPI_DISABLE]);
        assert!(!sci.is_high());
        assert!(!pm.acpi_enabled());
        pm.write(SMI_CMD_PORT, 0, &[ACPI_ENABLE]);
        assert!(sci.is_high());
        wr16(&mut pm, PM1A_EVT_PORT, 0, PM1_PWRBTN_STS);
        assert!(!sci.is_high());
        assert_eq!(sci.history(), vec![true, false, true, false, true, false]);
        // Unknown SMI commands and wide writes do nothing.
        pm.write(SMI_CMD_PORT, 0, &[0x55]);
        pm.write(SMI_CMD_PORT, 0, &[ACPI_DISABLE, 0]);
        assert!(pm.acpi_enabled());
        let mut b = [0u8; 1];
        pm.read(SMI_CMD_PORT, 0, &mut b);
        assert_eq!(b, [0xff]);
    }

    #[test]
    fn control_keeps_sci_en_and_s5_powers_off() {
        let (mut pm, vm, _, _) = dev();
        // The guest cannot set SCI_EN itself; SLP_EN is write-only; like
        // bhyve, the reserved bits 2-9 keep what was written.
        wr16(&mut pm, PM1A_CNT_PORT, 0, !PM1_SLP_EN);
        assert_eq!(rd16(&mut pm, PM1A_CNT_PORT, 0), 0x1ffc);
        pm.write(SMI_CMD_PORT, 0, &[ACPI_ENABLE]);
        // Other sleep types are ignored.
        for typ in [0u16, 1, 3, 4, 7] {
            wr16(&mut pm, PM1A_CNT_PORT, 0, typ << 10 | PM1_SLP_EN);
        }
        assert!(vm.exits().is_empty());
        assert_eq!(rd16(&mut pm, PM1A_CNT_PORT, 0), PM1_SCI_EN | 7 << 10);
        wr16(&mut pm, PM1A_CNT_PORT, 0, 0);
        // S5 without SLP_EN is only a value.
        wr16(&mut pm, PM1A_CNT_PORT, 0, SLP_TYP_S5 << 10);
        assert!(vm.exits().is_empty());
        wr16(&mut pm, PM1A_CNT_PORT, 0, SLP_TYP_S5 << 10 | PM1_SLP_EN);
        assert_eq!(vm.exits(), vec![ExitRequest::PowerOff]);
        assert_eq!(
            rd16(&mut pm, PM1A_CNT_PORT, 0),
            PM1_SCI_EN | SLP_TYP_S5 << 10
        );
    }

    #[test]
    fn odd_accesses_never_panic_and_float() {
        let (mut pm, vm, sci, _) = dev();
        for (base, len) in pm.ranges() {
            for off in 0..len + 2 {
                for size in [0usize, 1, 2, 3, 4, 8] {
                    let mut b = vec![0u8; size];
                    pm.read(base, off, &mut b);
                    let w = vec![0xffu8; size];
                    let smi = base == SMI_CMD_PORT && size == 1 && off == 0;
                    let pm1 = size == 2 && off % 2 == 0 && base != PM_TMR_PORT;
                    if !smi && !pm1 {
                        pm.write(base, off, &w);
                    }
                }
            }
        }
        let mut b = [0u8; 1];
        pm.read(PM1A_EVT_PORT, 0, &mut b);
        assert_eq!(b, [0xff]);
        assert!(vm.exits().is_empty());
        assert!(sci.history().is_empty());
        assert_eq!(rd16(&mut pm, PM1A_CNT_PORT, 0), 0);
        assert_eq!(rd16(&mut pm, PM1A_EVT_PORT, 2), 0);
    }

    #[test]
    fn block_moves_with_its_base() {
        let (mut pm, vm, _, _) = dev();
        pm.set_base(0x600);
        assert_eq!(
            pm.ranges(),
            [(0x600, 4), (0x604, 2), (0x608, 4), (SMI_CMD_PORT, 1)]
        );
        // The old 0x402 is nobody's now; 0x604 is PM1a control.
        let mut b = [0u8; 2];
        pm.read(0x402, 0, &mut b);
        assert_eq!(b, [0xff; 2]);
        pm.write(SMI_CMD_PORT, 0, &[ACPI_ENABLE]);
        assert_eq!(rd16(&mut pm, 0x604, 0), PM1_SCI_EN);
        wr16(
            &mut pm,
            0x604,
            0,
            PM1_SCI_EN | SLP_TYP_S5 << 10 | PM1_SLP_EN,
        );
        assert_eq!(vm.exits(), vec![ExitRequest::PowerOff]);
    }
}
