//! i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command),
//! after bhyve's `atkbdc.c`, controller part only.
//!
//! Emulated: the status register, the controller command byte and its 32
//! bytes of RAM (0x20..0x3f / 0x60..0x7f), self tests (0xaa → 0x55, 0xa9 /
//! 0xab → 0), input/output port reads and output port writes, port
//! enable/disable bits, and 0xfe, "pulse reset line", which reboots the VM
//! as bhyve's `vm_suspend(VM_SUSPEND_RESET)` does.
//!
//! Not emulated yet: the PS/2 keyboard and mouse behind the controller
//! (ps2kbd.c / ps2mouse.c: bytes written to 0x60 for them are dropped and
//! never answered, so guests see no keyboard), scancode translation, the
//! 0xd2/0xd3/0xd4 output-buffer writes, and IRQ 1 / IRQ 12 (controller
//! replies are only visible by polling the status register, which is how
//! guests read them).
//!
//! The vmm inserts one `Arc<Mutex<Atkbdc>>` at [`KBD_DATA_PORT`] and
//! [`KBD_STS_CTL_PORT`], each with length 1.

use std::sync::Arc;

use crate::{BusDevice, ExitRequest, VmControl};

pub const KBD_DATA_PORT: u64 = 0x60;
pub const KBD_STS_CTL_PORT: u64 = 0x64;

const KBDC_SET_COMMAND_BYTE: u8 = 0x60;
const KBDC_GET_COMMAND_BYTE: u8 = 0x20;
const KBDC_DISABLE_AUX_PORT: u8 = 0xa7;
const KBDC_ENABLE_AUX_PORT: u8 = 0xa8;
const KBDC_TEST_AUX_PORT: u8 = 0xa9;
const KBDC_TEST_CTRL: u8 = 0xaa;
const KBDC_TEST_KBD_PORT: u8 = 0xab;
const KBDC_DISABLE_KBD_PORT: u8 = 0xad;
const KBDC_ENABLE_KBD_PORT: u8 = 0xae;
const KBDC_READ_INPORT: u8 = 0xc0;
const KBDC_READ_OUTPORT: u8 = 0xd0;
const KBDC_WRITE_OUTPORT: u8 = 0xd1;
const KBDC_RESET: u8 = 0xfe;

const KBD_SYS_FLAG_BIT: u8 = 0x04;
const KBD_DISABLE_KBD_PORT: u8 = 0x10;
const KBD_DISABLE_AUX_PORT: u8 = 0x20;

const KBDS_KBD_BUFFER_FULL: u8 = 0x01;
const KBDS_SYS_FLAG: u8 = 0x04;
const KBDS_CTRL_FLAG: u8 = 0x08;

const RAM_SIZE: usize = 32;

pub struct Atkbdc {
    vm: Arc<dyn VmControl>,
    status: u8,
    outport: u8,
    /// Byte 0 is the controller command byte.
    ram: [u8; RAM_SIZE],
    /// Command waiting for its data byte on port 0x60.
    curcmd: Option<u8>,
    /// Controller reply waiting to be read from port 0x60.
    reply: Option<u8>,
}

impl Atkbdc {
    pub fn new(vm: Arc<dyn VmControl>) -> Self {
        Atkbdc {
            vm,
            status: 0,
            outport: 0,
            ram: [0; RAM_SIZE],
            curcmd: None,
            reply: None,
        }
    }

    fn set_reply(&mut self, v: u8) {
        self.reply = Some(v);
        self.status |= KBDS_KBD_BUFFER_FULL;
    }

    fn command(&mut self, cmd: u8) {
        self.curcmd = None;
        self.reply = None;
        self.status &= !KBDS_KBD_BUFFER_FULL;
        self.status |= KBDS_CTRL_FLAG;
        match cmd {
            KBDC_GET_COMMAND_BYTE => self.set_reply(self.ram[0]),
            0x21..=0x3f => self.set_reply(self.ram[usize::from(cmd - 0x20)]),
            KBDC_TEST_CTRL => self.set_reply(0x55),
            KBDC_TEST_AUX_PORT | KBDC_TEST_KBD_PORT | KBDC_READ_INPORT => self.set_reply(0),
            KBDC_READ_OUTPORT => self.set_reply(self.outport),
            KBDC_SET_COMMAND_BYTE..=0x7f | KBDC_WRITE_OUTPORT => self.curcmd = Some(cmd),
            KBDC_DISABLE_KBD_PORT => self.ram[0] |= KBD_DISABLE_KBD_PORT,
            KBDC_ENABLE_KBD_PORT => self.ram[0] &= !KBD_DISABLE_KBD_PORT,
            KBDC_DISABLE_AUX_PORT => self.ram[0] |= KBD_DISABLE_AUX_PORT,
            KBDC_ENABLE_AUX_PORT => self.ram[0] &= !KBD_DISABLE_AUX_PORT,
            KBDC_RESET => self.vm.request_exit(ExitRequest::Reboot),
            _ => log::debug!("atkbdc: unemulated command {cmd:#04x}"),
        }
    }

    fn data_write(&mut self, v: u8) {
        if self.status & KBDS_CTRL_FLAG != 0 {
            match self.curcmd.take() {
                Some(KBDC_SET_COMMAND_BYTE) => {
                    self.ram[0] = v;
                    if v & KBD_SYS_FLAG_BIT != 0 {
                        self.status |= KBDS_SYS_FLAG;
                    } else {
                        self.status &= !KBDS_SYS_FLAG;
                    }
                }
                Some(KBDC_WRITE_OUTPORT) => self.outport = v,
                Some(c @ 0x61..=0x7f) => self.ram[usize::from(c - 0x60)] = v,
                _ => {}
            }
            self.status &= !KBDS_CTRL_FLAG;
            return;
        }
        log::debug!("atkbdc: no PS/2 keyboard to take {v:#04x}");
    }

    fn data_read(&mut self) -> u8 {
        self.curcmd = None;
        self.status &= !(KBDS_CTRL_FLAG | KBDS_KBD_BUFFER_FULL);
        self.reply.take().unwrap_or(0)
    }
}

impl BusDevice for Atkbdc {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        if data.len() != 1 || offset != 0 {
            data.fill(0xff);
            return;
        }
        data[0] = match base {
            KBD_DATA_PORT => self.data_read(),
            KBD_STS_CTL_PORT => self.status,
            _ => 0xff,
        };
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if data.len() != 1 || offset != 0 {
            return;
        }
        match base {
            KBD_DATA_PORT => self.data_write(data[0]),
            KBD_STS_CTL_PORT => self.command(data[0]),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::RecVm;

    fn inb(k: &mut Atkbdc, port: u64) -> u8 {
        let mut b = [0u8; 1];
        k.read(port, 0, &mut b);
        b[0]
    }

    fn outb(k: &mut Atkbdc, port: u64, v: u8) {
        k.write(port, 0, &[v]);
    }

    #[test]
    fn pulse_reset_reboots() {
        let vm = RecVm::new();
        let mut k = Atkbdc::new(vm.clone());
        // What Linux's reboot=k does: wait for an empty input buffer, 0xfe.
        assert_eq!(inb(&mut k, KBD_STS_CTL_PORT) & 0x02, 0);
        outb(&mut k, KBD_STS_CTL_PORT, 0xfe);
        assert_eq!(vm.exits(), vec![ExitRequest::Reboot]);
    }

    #[test]
    fn status_and_controller_commands() {
        let vm = RecVm::new();
        let mut k = Atkbdc::new(vm.clone());
        assert_eq!(
            inb(&mut k, KBD_STS_CTL_PORT),
            0,
            "idle: no data, input empty"
        );

        outb(&mut k, KBD_STS_CTL_PORT, KBDC_TEST_CTRL);
        assert_eq!(
            inb(&mut k, KBD_STS_CTL_PORT) & KBDS_KBD_BUFFER_FULL,
            KBDS_KBD_BUFFER_FULL
        );
        assert_eq!(inb(&mut k, KBD_DATA_PORT), 0x55);
        assert_eq!(inb(&mut k, KBD_STS_CTL_PORT) & KBDS_KBD_BUFFER_FULL, 0);

        outb(&mut k, KBD_STS_CTL_PORT, KBDC_SET_COMMAND_BYTE);
        outb(&mut k, KBD_DATA_PORT, 0x47);
        assert_eq!(inb(&mut k, KBD_STS_CTL_PORT) & KBDS_SYS_FLAG, KBDS_SYS_FLAG);
        outb(&mut k, KBD_STS_CTL_PORT, KBDC_GET_COMMAND_BYTE);
        assert_eq!(inb(&mut k, KBD_DATA_PORT), 0x47);

        outb(&mut k, KBD_STS_CTL_PORT, KBDC_DISABLE_KBD_PORT);
        outb(&mut k, KBD_STS_CTL_PORT, KBDC_GET_COMMAND_BYTE);
        assert_eq!(inb(&mut k, KBD_DATA_PORT), 0x57);

        outb(&mut k, KBD_STS_CTL_PORT, 0x65); // write RAM byte 5
        outb(&mut k, KBD_DATA_PORT, 0xa5);
        outb(&mut k, KBD_STS_CTL_PORT, 0x25);
        assert_eq!(inb(&mut k, KBD_DATA_PORT), 0xa5);

        outb(&mut k, KBD_STS_CTL_PORT, KBDC_WRITE_OUTPORT);
        outb(&mut k, KBD_DATA_PORT, 0xdf);
        outb(&mut k, KBD_STS_CTL_PORT, KBDC_READ_OUTPORT);
        assert_eq!(inb(&mut k, KBD_DATA_PORT), 0xdf);

        outb(&mut k, KBD_STS_CTL_PORT, KBDC_TEST_KBD_PORT);
        assert_eq!(inb(&mut k, KBD_DATA_PORT), 0);
        // Keyboard-bound byte with no keyboard: no reply, no crash.
        outb(&mut k, KBD_DATA_PORT, 0xff);
        assert_eq!(inb(&mut k, KBD_STS_CTL_PORT) & KBDS_KBD_BUFFER_FULL, 0);
        assert!(vm.exits().is_empty());

        let mut w = [0u8; 2];
        k.read(KBD_STS_CTL_PORT, 0, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        k.write(KBD_STS_CTL_PORT, 0, &[0xfe, 0]);
        assert!(vm.exits().is_empty(), "only byte writes decode");
    }
}
