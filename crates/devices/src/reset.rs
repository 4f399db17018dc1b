//! Reset Control register at I/O port 0xcf9 (bhyve's `pm.c`).
//!
//! Bit 2 asks for a system reset; bit 1 picks hard or soft reset, which
//! bhyve (and so this device) treats alike. Only byte accesses decode, so
//! a 4-byte access at 0xcf8 stays with the PCI CONFIG_ADDRESS register: the
//! vmm registers this device at [`RESET_PORT`] with length [`RESET_PORT_LEN`]
//! and PCI's 0xcf8 with length 1.

use std::sync::Arc;

use crate::{BusDevice, ExitRequest, VmControl};

pub const RESET_PORT: u64 = 0xcf9;
pub const RESET_PORT_LEN: u64 = 1;

const RCR_SYS_RST: u8 = 0x04;

pub struct ResetControl {
    value: u8,
    vm: Arc<dyn VmControl>,
}

impl ResetControl {
    pub fn new(vm: Arc<dyn VmControl>) -> Self {
        ResetControl { value: 0, vm }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset == 0 {
            data[0] = self.value;
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if data.len() != 1 || offset != 0 {
            return;
        }
        self.value = data[0];
        if self.value & RCR_SYS_RST != 0 {
            self.vm.request_exit(ExitRequest::Reboot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::RecVm;

    #[test]
    fn reset_bit_reboots_and_value_reads_back() {
        let vm = RecVm::new();
        let mut r = ResetControl::new(vm.clone());
        let mut b = [0u8; 1];
        r.read(RESET_PORT, 0, &mut b);
        assert_eq!(b, [0]);
        r.write(RESET_PORT, 0, &[0x02]); // hard-reset select alone: nothing
        assert!(vm.exits().is_empty());
        r.read(RESET_PORT, 0, &mut b);
        assert_eq!(b, [0x02]);
        r.write(RESET_PORT, 0, &[0x06]);
        assert_eq!(vm.exits(), vec![ExitRequest::Reboot]);
        r.read(RESET_PORT, 0, &mut b);
        assert_eq!(b, [0x06]);
    }

    #[test]
    fn wide_accesses_are_ignored() {
        let vm = RecVm::new();
        let mut r = ResetControl::new(vm.clone());
        r.write(RESET_PORT, 0, &[0x04, 0, 0, 0]);
        r.write(RESET_PORT, 0, &[0x04, 0x04]);
        assert!(vm.exits().is_empty());
        let mut w = [0u8; 2];
        r.read(RESET_PORT, 0, &mut w);
        assert_eq!(w, [0xff, 0xff]);
    }
}
