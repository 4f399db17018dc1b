//! i8042 keyboard controller at ports 0x60 (data) and 0x64
//! (status/command), after bhyve's `atkbdc.c`, with the PS/2 keyboard
//! ([`crate::ps2kbd`]) and mouse ([`crate::ps2mouse`]) behind it.
//!
//! The controller: status register, command byte (CTR) and its 32 bytes
//! of RAM (0x20–0x3f read, 0x60–0x7f write), self tests (0xaa → 0x55,
//! 0xa9/0xab → 0), input/output port, keyboard and auxiliary port
//! enable/disable (0xad/0xae, 0xa7/0xa8 or the CTR bits), 0xd2/0xd3
//! (write the output buffer as if from the keyboard/mouse, the AUX
//! loopback Linux probes with), 0xd4 (next byte to the mouse), set-2 →
//! set-1 translation (CTR bit 6), and 0xfe, "pulse reset line", which
//! reboots the VM as bhyve's `vm_suspend(VM_SUSPEND_RESET)` does.
//!
//! One byte at a time sits in the output buffer: controller replies
//! first, then bytes written with 0xd2/0xd3, then the mouse, then the
//! keyboard (bhyve's priority). Each byte loaded raises IRQ 1 (keyboard
//! and controller) or IRQ 12 (mouse, with the status AUX bit) as an edge
//! if the CTR enables that interrupt; enabling it with a byte waiting
//! raises it then.
//!
//! Differs from bhyve: a data byte after a command that takes no
//! parameter goes to the keyboard (bhyve drops it until the next read);
//! status bit 4 ("keyboard not inhibited") is set, so Linux does not warn
//! "Keylock active"; a disabled port holds back key and motion events
//! instead of letting them through; a controller reply does not overwrite
//! a device byte waiting in the output buffer.
//!
//! The vmm inserts one `Arc<Mutex<Atkbdc>>` at [`KBD_DATA_PORT`] and
//! [`KBD_STS_CTL_PORT`], each with length 1; input sources (a VNC server)
//! call [`Atkbdc::key_event`] / [`Atkbdc::pointer_event`] /
//! [`Atkbdc::mouse_motion`] through the same mutex.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ps2kbd::{Ps2Kbd, SET1_TO_SET2};
use crate::ps2mouse::Ps2Mouse;
use crate::{BusDevice, ExitRequest, IrqLine, VmControl};

pub const KBD_DATA_PORT: u64 = 0x60;
pub const KBD_STS_CTL_PORT: u64 = 0x64;
/// ISA IRQs of the keyboard and the mouse (bhyve reserves both from the
/// PCI interrupt links).
pub const KBD_IRQ: u32 = 1;
pub const AUX_IRQ: u32 = 12;

const KBDC_GET_COMMAND_BYTE: u8 = 0x20;
const KBDC_SET_COMMAND_BYTE: u8 = 0x60;
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
const KBDC_WRITE_KBD_OUTBUF: u8 = 0xd2;
const KBDC_WRITE_AUX_OUTBUF: u8 = 0xd3;
const KBDC_WRITE_TO_AUX: u8 = 0xd4;
const KBDC_RESET: u8 = 0xfe;

// Controller command byte (RAM byte 0).
const CTR_KBD_INT: u8 = 0x01;
const CTR_AUX_INT: u8 = 0x02;
const CTR_SYS_FLAG: u8 = 0x04;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;
const CTR_TRANSLATE: u8 = 0x40;

// Status register.
const STS_OUTPUT_FULL: u8 = 0x01;
const STS_SYS_FLAG: u8 = 0x04;
const STS_COMMAND: u8 = 0x08;
const STS_NOT_INHIBITED: u8 = 0x10;
const STS_AUX_DATA: u8 = 0x20;

// Output port bits mirroring the output buffer (bhyve's).
const OUTPORT_KBD_FULL: u8 = 0x10;
const OUTPORT_AUX_FULL: u8 = 0x20;

const RAM_SIZE: usize = 32;
/// Bytes the guest may queue with 0xd2/0xd3 before they are dropped.
const INJECT_MAX: usize = 16;

/// The 8042's set-2 → set-1 translation: the inverse of the set-1 → set-2
/// table for the codes keys send (which covers F7's 0x83 and SysRq's
/// 0x84), identity for the other codes above 0x7f, the two alternative
/// codes of F7 (0x02) and SysRq (0x7f), and 0xff for unused codes.
const fn translation_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0x80;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    let mut s1 = 1;
    while s1 < 128 {
        t[SET1_TO_SET2[s1] as usize] = s1 as u8;
        s1 += 1;
    }
    t[0x02] = 0x41;
    t[0x7f] = 0x54;
    t
}
const TRANSLATION: [u8; 256] = translation_table();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Controller,
    Kbd,
    Aux,
}

pub struct Atkbdc {
    vm: Arc<dyn VmControl>,
    kbd_irq: Arc<dyn IrqLine>,
    aux_irq: Arc<dyn IrqLine>,
    /// SYS_FLAG and COMMAND bits; the buffer bits derive from `out`.
    status: u8,
    outport: u8,
    /// Byte 0 is the controller command byte.
    ram: [u8; RAM_SIZE],
    /// Command waiting for its data byte on port 0x60.
    curcmd: Option<u8>,
    /// The output buffer.
    out: Option<(u8, Source)>,
    /// Its interrupt was raised (or masked) already.
    signalled: bool,
    /// What the last read of port 0x60 returned (repeated when empty).
    last: u8,
    /// Bytes written with 0xd2/0xd3, and device bytes pushed back by a
    /// controller reply.
    injected: VecDeque<(u8, Source)>,
    /// Translation saw a set-2 break prefix (0xf0).
    release: bool,
    kbd: Ps2Kbd,
    mouse: Ps2Mouse,
}

impl Atkbdc {
    /// `kbd_irq` and `aux_irq` are ISA IRQs [`KBD_IRQ`] and [`AUX_IRQ`].
    pub fn new(
        vm: Arc<dyn VmControl>,
        kbd_irq: Arc<dyn IrqLine>,
        aux_irq: Arc<dyn IrqLine>,
    ) -> Self {
        let mut mouse = Ps2Mouse::new();
        mouse.set_port_enabled(true);
        Atkbdc {
            vm,
            kbd_irq,
            aux_irq,
            status: 0,
            outport: 0,
            ram: [0; RAM_SIZE],
            curcmd: None,
            out: None,
            signalled: true,
            last: 0,
            injected: VecDeque::new(),
            release: false,
            kbd: Ps2Kbd::new(),
            mouse,
        }
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn set_ctr(&mut self, v: u8) {
        self.ram[0] = v;
        if v & CTR_SYS_FLAG != 0 {
            self.status |= STS_SYS_FLAG;
        } else {
            self.status &= !STS_SYS_FLAG;
        }
        self.mouse.set_port_enabled(v & CTR_AUX_DISABLED == 0);
        if v & CTR_TRANSLATE == 0 {
            self.release = false;
        }
        // An interrupt enabled now fires for a byte already waiting.
        self.signalled = false;
    }

    fn inject(&mut self, v: u8, src: Source) {
        if self.injected.len() < INJECT_MAX {
            self.injected.push_back((v, src));
        }
    }

    /// A controller reply takes the output buffer; a device byte waiting
    /// there goes back to the head of the queue.
    fn reply(&mut self, v: u8) {
        if let Some(o) = self.out.take() {
            if o.1 != Source::Controller {
                if self.injected.len() >= INJECT_MAX {
                    self.injected.pop_back();
                }
                self.injected.push_front(o);
            }
        }
        self.out = Some((v, Source::Controller));
        self.signalled = false;
    }

    fn next_kbd_byte(&mut self) -> Option<u8> {
        while let Some(b) = self.kbd.read() {
            if self.ctr() & CTR_TRANSLATE == 0 {
                return Some(b);
            }
            if b == 0xf0 {
                self.release = true;
                continue;
            }
            let t = TRANSLATION[usize::from(b)] | if self.release { 0x80 } else { 0 };
            self.release = false;
            return Some(t);
        }
        None
    }

    /// Loads the output buffer if it is empty, then updates the status
    /// and raises the interrupt of a newly loaded byte.
    fn update(&mut self) {
        if self.out.is_none() {
            self.out = self
                .injected
                .pop_front()
                .or_else(|| self.mouse.read().map(|b| (b, Source::Aux)))
                .or_else(|| self.next_kbd_byte().map(|b| (b, Source::Kbd)));
            if self.out.is_some() {
                self.signalled = false;
            }
        }
        self.status &= !(STS_OUTPUT_FULL | STS_AUX_DATA);
        self.outport &= !(OUTPORT_KBD_FULL | OUTPORT_AUX_FULL);
        let Some((_, src)) = self.out else {
            return;
        };
        self.status |= STS_OUTPUT_FULL;
        if src == Source::Aux {
            self.status |= STS_AUX_DATA;
            self.outport |= OUTPORT_AUX_FULL;
        } else {
            self.outport |= OUTPORT_KBD_FULL;
        }
        if !self.signalled {
            self.signalled = true;
            if src == Source::Aux {
                if self.ctr() & CTR_AUX_INT != 0 {
                    self.aux_irq.pulse();
                }
            } else if self.ctr() & CTR_KBD_INT != 0 {
                self.kbd_irq.pulse();
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        self.curcmd = None;
        self.status |= STS_COMMAND;
        // A new command drops an unread reply to the last one.
        if matches!(self.out, Some((_, Source::Controller))) {
            self.out = None;
        }
        match cmd {
            KBDC_GET_COMMAND_BYTE..=0x3f => self.reply(self.ram[usize::from(cmd & 0x1f)]),
            KBDC_TEST_CTRL => self.reply(0x55),
            KBDC_TEST_AUX_PORT | KBDC_TEST_KBD_PORT | KBDC_READ_INPORT => self.reply(0),
            KBDC_READ_OUTPORT => self.reply(self.outport),
            KBDC_SET_COMMAND_BYTE..=0x7f
            | KBDC_WRITE_OUTPORT
            | KBDC_WRITE_KBD_OUTBUF
            | KBDC_WRITE_AUX_OUTBUF
            | KBDC_WRITE_TO_AUX => self.curcmd = Some(cmd),
            KBDC_DISABLE_KBD_PORT => self.ram[0] |= CTR_KBD_DISABLED,
            KBDC_ENABLE_KBD_PORT => self.ram[0] &= !CTR_KBD_DISABLED,
            KBDC_DISABLE_AUX_PORT => {
                self.ram[0] |= CTR_AUX_DISABLED;
                self.mouse.set_port_enabled(false);
            }
            KBDC_ENABLE_AUX_PORT => {
                self.ram[0] &= !CTR_AUX_DISABLED;
                self.mouse.set_port_enabled(true);
            }
            KBDC_RESET => self.vm.request_exit(ExitRequest::Reboot),
            _ => log::debug!("atkbdc: unemulated command {cmd:#04x}"),
        }
        self.update();
    }

    fn data_write(&mut self, v: u8) {
        self.status &= !STS_COMMAND;
        match self.curcmd.take() {
            Some(KBDC_SET_COMMAND_BYTE) => self.set_ctr(v),
            Some(c @ 0x61..=0x7f) => self.ram[usize::from(c & 0x1f)] = v,
            Some(KBDC_WRITE_OUTPORT) => self.outport = v,
            Some(KBDC_WRITE_KBD_OUTBUF) => self.inject(v, Source::Kbd),
            Some(KBDC_WRITE_AUX_OUTBUF) => self.inject(v, Source::Aux),
            Some(KBDC_WRITE_TO_AUX) => self.mouse.write(v),
            _ => self.kbd.write(v),
        }
        self.update();
    }

    fn data_read(&mut self) -> u8 {
        self.status &= !STS_COMMAND;
        if let Some((b, _)) = self.out.take() {
            self.last = b;
        }
        self.update();
        self.last
    }

    /// A key event as bhyve's console delivers it: `keycode` is an XT
    /// keycode (bit 7: 0xe0 prefix) when non-zero, else `keysym` (X11)
    /// picks the key. Dropped while the keyboard port is disabled.
    pub fn key_event(&mut self, down: bool, keysym: u32, keycode: u8) {
        if self.ctr() & CTR_KBD_DISABLED != 0 {
            return;
        }
        if keycode != 0 {
            self.kbd.key_xt(down, keycode);
        } else {
            self.kbd.key_keysym(down, keysym);
        }
        self.update();
    }

    /// Scancode bytes in the keyboard's current set, sent as they are.
    pub fn key_scancodes(&mut self, bytes: &[u8]) {
        if self.ctr() & CTR_KBD_DISABLED == 0 {
            self.kbd.push_scancodes(bytes);
            self.update();
        }
    }

    /// Relative mouse motion (`dy` positive is up) with the buttons down
    /// (VNC mask: bit 0 left, 1 middle, 2 right).
    pub fn mouse_motion(&mut self, dx: i32, dy: i32, buttons: u8) {
        if self.mouse.motion(dx, dy, buttons) {
            self.update();
        }
    }

    /// An absolute pointer position as VNC sends it (y grows downwards).
    pub fn pointer_event(&mut self, x: i32, y: i32, buttons: u8) {
        if self.mouse.pointer(x, y, buttons) {
            self.update();
        }
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
            KBD_STS_CTL_PORT => self.status | STS_NOT_INHIBITED,
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
#[path = "atkbdc_tests.rs"]
mod tests;
