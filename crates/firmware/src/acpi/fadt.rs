//! FADT ("FACP") and FACS, as bhyve's `build_fadt`/`build_facs` lay them
//! out: an ACPI 5.1 FADT (revision 5, minor 1, with the ACPI 6 hypervisor
//! vendor field, 276 bytes) describing bhyve's PM register block, SCI,
//! SMI command port, reset register and RTC century index.

use super::sdt::{
    finish, gas, gas_none, header, Put, GAS_ACCESS_BYTE, GAS_ACCESS_DWORD, GAS_ACCESS_WORD,
    GAS_SYSTEM_IO,
};
use super::AcpiSpec;

pub const FADT_LEN: usize = 276;
pub const FADT_REVISION: u8 = 5;
pub const FADT_MINOR_REVISION: u8 = 1;
pub const FACS_LEN: usize = 64;

/// Field offsets (ACPI 6.5 table 5.9), for the tests and for readers.
pub mod off {
    pub const FIRMWARE_CTRL: usize = 36;
    pub const DSDT: usize = 40;
    pub const SCI_INT: usize = 46;
    pub const SMI_CMD: usize = 48;
    pub const ACPI_ENABLE: usize = 52;
    pub const ACPI_DISABLE: usize = 53;
    pub const PM1A_EVT_BLK: usize = 56;
    pub const PM1A_CNT_BLK: usize = 64;
    pub const PM_TMR_BLK: usize = 76;
    pub const GPE0_BLK: usize = 80;
    pub const PM1_EVT_LEN: usize = 88;
    pub const PM1_CNT_LEN: usize = 89;
    pub const PM_TMR_LEN: usize = 91;
    pub const GPE0_BLK_LEN: usize = 92;
    pub const CENTURY: usize = 108;
    pub const IAPC_BOOT_ARCH: usize = 109;
    pub const FLAGS: usize = 112;
    pub const RESET_REG: usize = 116;
    pub const RESET_VALUE: usize = 128;
    pub const MINOR_REVISION: usize = 131;
    pub const X_FIRMWARE_CTRL: usize = 132;
    pub const X_DSDT: usize = 140;
    pub const X_PM1A_EVT_BLK: usize = 148;
    pub const X_PM1A_CNT_BLK: usize = 172;
    pub const X_PM_TMR_BLK: usize = 208;
    pub const X_GPE0_BLK: usize = 220;
}

/// FADT feature flags (ACPI 6.5 table 5.10).
pub mod flags {
    pub const WBINVD: u32 = 1 << 0;
    pub const PROC_C1: u32 = 1 << 2;
    /// Set: the power button is a control-method device; clear: it is
    /// the fixed-feature button in PM1 (bhyve's choice).
    pub const PWR_BUTTON: u32 = 1 << 4;
    pub const SLP_BUTTON: u32 = 1 << 5;
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    pub const RESET_REG_SUP: u32 = 1 << 10;
    pub const HEADLESS: u32 = 1 << 12;
    pub const FORCE_APIC_PHYSICAL_DESTINATION_MODE: u32 = 1 << 19;
}

/// IA-PC boot architecture flags.
pub mod boot_arch {
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    pub const I8042: u16 = 1 << 1;
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    pub const PCIE_ASPM_CONTROLS: u16 = 1 << 4;
}

/// bhyve's flag word: WBINVD works, C1 on all CPUs, no sleep button
/// (control-method, and there is none), fixed power button, 32-bit PM
/// timer, reset register, headless, physical APIC destination mode.
pub const BHYVE_FLAGS: u32 = flags::WBINVD
    | flags::PROC_C1
    | flags::SLP_BUTTON
    | flags::TMR_VAL_EXT
    | flags::RESET_REG_SUP
    | flags::HEADLESS
    | flags::FORCE_APIC_PHYSICAL_DESTINATION_MODE;

/// bhyve's boot flags: no VGA, no ASPM; no 8042 (so Linux does not
/// probe a keyboard controller, as on bhyve).
pub const BHYVE_BOOT_ARCH: u16 = boot_arch::VGA_NOT_PRESENT | boot_arch::PCIE_ASPM_CONTROLS;

/// The FADT pointing at the FACS and DSDT at `facs`/`dsdt` (both the
/// 32-bit and the 64-bit fields, as bhyve fills them).
pub fn fadt(spec: &AcpiSpec, facs: u64, dsdt: u64) -> Vec<u8> {
    let pm = &spec.pm;
    let (gpe0_base, gpe0_len) = pm.gpe0.unwrap_or((0, 0));
    let mut t = header(b"FACP", FADT_REVISION);
    t.u32(facs as u32);
    t.u32(dsdt as u32);
    t.u8(0); // reserved (ACPI 1.0 INT_MODEL)
    t.u8(0); // preferred PM profile: unspecified
    t.u16(u16::from(spec.sci_irq));
    t.u32(u32::from(pm.smi_cmd));
    t.u8(pm.acpi_enable);
    t.u8(pm.acpi_disable);
    t.u8(0); // S4BIOS_REQ
    t.u8(0); // PSTATE_CNT
    t.u32(u32::from(pm.pm1a_evt));
    t.u32(0); // PM1b event
    t.u32(u32::from(pm.pm1a_cnt));
    t.u32(0); // PM1b control
    t.u32(0); // PM2 control
    t.u32(u32::from(pm.pm_tmr));
    t.u32(u32::from(gpe0_base));
    t.u32(0); // GPE1
    t.u8(PM1_EVT_LEN);
    t.u8(PM1_CNT_LEN);
    t.u8(0); // PM2 control length
    t.u8(PM_TMR_LEN);
    t.u8(gpe0_len);
    t.u8(0); // GPE1 length
    t.u8(0); // GPE1 base
    t.u8(0); // CST_CNT
    t.u16(0); // P_LVL2_LAT
    t.u16(0); // P_LVL3_LAT
    t.u16(0); // FLUSH_SIZE
    t.u16(0); // FLUSH_STRIDE
    t.u8(0); // DUTY_OFFSET
    t.u8(0); // DUTY_WIDTH
    t.u8(0); // DAY_ALRM
    t.u8(0); // MON_ALRM
    t.u8(spec.rtc_century);
    t.u16(BHYVE_BOOT_ARCH);
    t.u8(0);
    t.u32(BHYVE_FLAGS);
    gas(
        &mut t,
        GAS_SYSTEM_IO,
        8,
        GAS_ACCESS_BYTE,
        u64::from(spec.reset.0),
    );
    t.u8(spec.reset.1);
    t.u16(0); // ARM boot architecture
    t.u8(FADT_MINOR_REVISION);
    t.u64(facs);
    t.u64(dsdt);
    gas(
        &mut t,
        GAS_SYSTEM_IO,
        PM1_EVT_LEN * 8,
        GAS_ACCESS_WORD,
        u64::from(pm.pm1a_evt),
    );
    gas_none(&mut t); // PM1b event
    gas(
        &mut t,
        GAS_SYSTEM_IO,
        PM1_CNT_LEN * 8,
        GAS_ACCESS_WORD,
        u64::from(pm.pm1a_cnt),
    );
    gas_none(&mut t); // PM1b control
    gas_none(&mut t); // PM2 control
    gas(
        &mut t,
        GAS_SYSTEM_IO,
        PM_TMR_LEN * 8,
        GAS_ACCESS_DWORD,
        u64::from(pm.pm_tmr),
    );
    match pm.gpe0 {
        Some((base, len)) => gas(
            &mut t,
            GAS_SYSTEM_IO,
            len.saturating_mul(8),
            GAS_ACCESS_BYTE,
            u64::from(base),
        ),
        None => gas_none(&mut t),
    }
    gas_none(&mut t); // GPE1
    gas_none(&mut t); // sleep control (hardware-reduced ACPI only)
    gas_none(&mut t); // sleep status
    t.u64(0); // hypervisor vendor identity
    debug_assert_eq!(t.len(), FADT_LEN);
    finish(t)
}

/// Lengths of bhyve's PM1 event block (status + enable), PM1 control
/// block and PM timer.
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT_LEN: u8 = 2;
pub const PM_TMR_LEN: u8 = 4;

/// The FACS: no checksum, no waking vector (no S3), version 2.
pub fn facs() -> Vec<u8> {
    let mut t = Vec::with_capacity(FACS_LEN);
    t.extend_from_slice(b"FACS");
    t.u32(FACS_LEN as u32);
    t.u32(0); // hardware signature
    t.u32(0); // firmware waking vector
    t.u32(0); // global lock
    t.u32(0); // flags
    t.u64(0); // X firmware waking vector
    t.u8(2); // version
    t.extend_from_slice(&[0; 3]);
    t.u32(0); // OSPM flags
    t.extend_from_slice(&[0; 24]);
    debug_assert_eq!(t.len(), FACS_LEN);
    t
}
