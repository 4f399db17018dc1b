//! SPCR: the serial console the firmware redirects to, which bhyve
//! describes as COM1 at 115200 8N1 with hardware flow control and a
//! VT-UTF8 terminal. We emit it only when COM1 exists.

use super::sdt::{finish, gas, header, Put, GAS_ACCESS_UNDEFINED, GAS_SYSTEM_IO};
use super::ComPort;

pub const SPCR_LEN: usize = 80;
pub const SPCR_REVISION: u8 = 1;

pub const INTERFACE_16550: u8 = 0;
/// Interrupt type bit 0: a dual-8259 IRQ (the "PC-AT IRQ" field).
pub const INTERRUPT_8259: u8 = 1;
pub const BAUD_115200: u8 = 7;
/// Flow control: DCD (bit 0) and RTS/CTS (bit 1).
pub const FLOW_DCD_RTS_CTS: u8 = 3;
pub const TERMINAL_VT_UTF8: u8 = 2;

/// Offsets of the fields after the header.
pub mod off {
    pub const INTERFACE: usize = 36;
    pub const ADDRESS: usize = 40;
    pub const INTERRUPT_TYPE: usize = 52;
    pub const IRQ: usize = 53;
    pub const BAUD: usize = 58;
    pub const PCI_DEVICE_ID: usize = 64;
}

pub fn spcr(com: &ComPort) -> Vec<u8> {
    let mut t = header(b"SPCR", SPCR_REVISION);
    t.u8(INTERFACE_16550);
    t.extend_from_slice(&[0; 3]);
    gas(
        &mut t,
        GAS_SYSTEM_IO,
        8,
        GAS_ACCESS_UNDEFINED,
        u64::from(com.base),
    );
    t.u8(INTERRUPT_8259);
    t.u8(com.irq);
    t.u32(0); // GSI (only for I/O APIC / SAPIC interrupt types)
    t.u8(BAUD_115200);
    t.u8(0); // no parity
    t.u8(1); // one stop bit
    t.u8(FLOW_DCD_RTS_CTS);
    t.u8(TERMINAL_VT_UTF8);
    t.u8(0); // language
             // Not a PCI device: IDs 0xffff, as the SPCR specification asks.
    t.u16(0xffff);
    t.u16(0xffff);
    t.extend_from_slice(&[0, 0, 0]); // bus, device, function
    t.u32(0); // PCI flags
    t.u8(0); // PCI segment
    t.u32(0);
    debug_assert_eq!(t.len(), SPCR_LEN);
    finish(t)
}
