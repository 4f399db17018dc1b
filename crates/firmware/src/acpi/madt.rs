//! MADT ("APIC"): the guest's only description of its CPUs and interrupt
//! routing when it boots with ACPI (a kernel without MP-table support,
//! like Debian's, finds its APs here and nowhere else).
//!
//! bhyve's content: one enabled Processor Local APIC per vCPU (ACPI
//! processor UID = APIC ID = vCPU index, as KVM numbers them and as our
//! CPUID reports), I/O APIC 0 at 0xfec00000 with GSI base 0, ISA IRQ 0
//! (the PIT) overridden to GSI 2 edge/high, the SCI (IRQ 9) level/low,
//! and NMI on LINT1 of every processor. The same wiring as the MP table.

use super::sdt::{finish, header, Put};
use crate::mptable::{IOAPIC_ADDR, IOAPIC_ID, LAPIC_ADDR, PIT_IOAPIC_PIN};

pub const MADT_REVISION: u8 = 1;
/// Length of the MADT before its entries (header, LAPIC address, flags).
pub const MADT_FIXED_LEN: usize = 44;
/// The MADT flag "the system also has dual 8259s" (PCAT_COMPAT).
pub const PCAT_COMPAT: u32 = 1;

/// Entry types and lengths.
pub const TYPE_LOCAL_APIC: u8 = 0;
pub const TYPE_IO_APIC: u8 = 1;
pub const TYPE_INT_OVERRIDE: u8 = 2;
pub const TYPE_LOCAL_APIC_NMI: u8 = 4;
pub const LOCAL_APIC_LEN: u8 = 8;
pub const IO_APIC_LEN: u8 = 12;
pub const INT_OVERRIDE_LEN: u8 = 10;
pub const LOCAL_APIC_NMI_LEN: u8 = 6;

pub const LOCAL_APIC_ENABLED: u32 = 1;
/// MPS INTI flags: polarity in bits 0–1, trigger mode in bits 2–3.
pub const INTI_ACTIVE_HIGH: u16 = 0x1;
pub const INTI_ACTIVE_LOW: u16 = 0x3;
pub const INTI_EDGE: u16 = 0x4;
pub const INTI_LEVEL: u16 = 0xc;
/// "All processors" in a Local APIC NMI entry.
pub const ALL_PROCESSORS: u8 = 0xff;

/// Length of the MADT for `cpus` processors.
pub fn madt_len(cpus: usize) -> usize {
    MADT_FIXED_LEN
        + cpus * usize::from(LOCAL_APIC_LEN)
        + usize::from(IO_APIC_LEN)
        + 2 * usize::from(INT_OVERRIDE_LEN)
        + usize::from(LOCAL_APIC_NMI_LEN)
}

fn int_override(t: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16) {
    t.extend_from_slice(&[TYPE_INT_OVERRIDE, INT_OVERRIDE_LEN, 0, irq]);
    t.u32(gsi);
    t.u16(flags);
}

/// The MADT for `cpus` processors (1 to `mptable::MAX_CPUS`, checked by
/// the caller) and the SCI on `sci_irq`.
pub fn madt(cpus: usize, sci_irq: u8) -> Vec<u8> {
    let mut t = header(b"APIC", MADT_REVISION);
    t.u32(LAPIC_ADDR);
    t.u32(PCAT_COMPAT);
    for i in 0..cpus {
        t.extend_from_slice(&[TYPE_LOCAL_APIC, LOCAL_APIC_LEN, i as u8, i as u8]);
        t.u32(LOCAL_APIC_ENABLED);
    }
    t.extend_from_slice(&[TYPE_IO_APIC, IO_APIC_LEN, IOAPIC_ID, 0]);
    t.u32(IOAPIC_ADDR);
    t.u32(0); // GSI base
    int_override(
        &mut t,
        0,
        u32::from(PIT_IOAPIC_PIN),
        INTI_ACTIVE_HIGH | INTI_EDGE,
    );
    int_override(
        &mut t,
        sci_irq,
        u32::from(sci_irq),
        INTI_ACTIVE_LOW | INTI_LEVEL,
    );
    t.extend_from_slice(&[TYPE_LOCAL_APIC_NMI, LOCAL_APIC_NMI_LEN, ALL_PROCESSORS]);
    t.u16(INTI_ACTIVE_HIGH | INTI_EDGE);
    t.u8(1); // LINT1
    debug_assert_eq!(t.len(), madt_len(cpus));
    finish(t)
}
