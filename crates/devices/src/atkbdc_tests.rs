use super::*;
use crate::ps2kbd::{PS2_ACK, PS2_BAT_OK};
use crate::ps2mouse::BUTTON_LEFT;
use crate::testutil::{RecIrq, RecVm};

struct Rig {
    k: Atkbdc,
    vm: Arc<RecVm>,
    irq1: Arc<RecIrq>,
    irq12: Arc<RecIrq>,
}

impl Rig {
    fn new() -> Self {
        let vm = RecVm::new();
        let irq1 = RecIrq::new();
        let irq12 = RecIrq::new();
        let k = Atkbdc::new(vm.clone(), irq1.clone(), irq12.clone());
        Rig { k, vm, irq1, irq12 }
    }
    fn inb(&mut self, port: u64) -> u8 {
        let mut b = [0u8; 1];
        self.k.read(port, 0, &mut b);
        b[0]
    }
    fn outb(&mut self, port: u64, v: u8) {
        self.k.write(port, 0, &[v]);
    }
    fn status(&mut self) -> u8 {
        self.inb(KBD_STS_CTL_PORT)
    }
    /// Linux's i8042_command: command, parameters, then one reply byte
    /// per expected answer, each only after OBF says it is there.
    fn command(&mut self, cmd: u8, params: &[u8], nreply: usize) -> Vec<(u8, u8)> {
        assert_eq!(self.status() & 0x02, 0, "input buffer never busy");
        self.outb(KBD_STS_CTL_PORT, cmd);
        for &p in params {
            self.outb(KBD_DATA_PORT, p);
        }
        (0..nreply)
            .map(|_| {
                let s = self.status();
                assert_ne!(s & STS_OUTPUT_FULL, 0, "reply to {cmd:#x} missing");
                (s, self.inb(KBD_DATA_PORT))
            })
            .collect()
    }
    /// Reads the output buffer until it is empty (i8042_flush).
    fn flush(&mut self) -> Vec<(u8, u8)> {
        let mut v = Vec::new();
        while self.status() & STS_OUTPUT_FULL != 0 {
            let s = self.status();
            v.push((s, self.inb(KBD_DATA_PORT)));
            assert!(v.len() <= 64, "output never drains");
        }
        v
    }
    fn edges(irq: &RecIrq) -> usize {
        irq.history().iter().filter(|&&h| h).count()
    }
}

fn bytes(v: &[(u8, u8)]) -> Vec<u8> {
    v.iter().map(|&(_, b)| b).collect()
}

#[test]
fn pulse_reset_reboots() {
    let mut r = Rig::new();
    // What Linux's reboot=k does: wait for an empty input buffer, 0xfe.
    assert_eq!(r.status() & 0x02, 0);
    r.outb(KBD_STS_CTL_PORT, 0xfe);
    assert_eq!(r.vm.exits(), vec![ExitRequest::Reboot]);
}

#[test]
fn linux_i8042_probe_sequence() {
    let mut r = Rig::new();
    assert_eq!(r.status(), STS_NOT_INHIBITED, "idle: no data, not locked");
    assert!(r.flush().is_empty());
    // i8042_controller_check / selftest.
    let ctr = r.command(KBDC_GET_COMMAND_BYTE, &[], 1)[0].1;
    assert_eq!(
        r.command(KBDC_TEST_CTRL, &[], 1),
        [(STS_NOT_INHIBITED | STS_COMMAND | STS_OUTPUT_FULL, 0x55)]
    );
    // i8042_controller_init: keyboard off, translation on, sys flag.
    let ctr = (ctr | CTR_KBD_DISABLED | CTR_TRANSLATE | CTR_SYS_FLAG) & !CTR_KBD_INT;
    r.command(KBDC_SET_COMMAND_BYTE, &[ctr], 0);
    assert_eq!(r.command(KBDC_GET_COMMAND_BYTE, &[], 1)[0].1, ctr);
    assert_ne!(r.status() & STS_SYS_FLAG, 0);
    // i8042_check_aux: loopback must come back marked as AUX data.
    let lb = r.command(KBDC_WRITE_AUX_OUTBUF, &[0x5a], 1);
    assert_eq!(lb[0].1, 0x5a);
    assert_ne!(lb[0].0 & STS_AUX_DATA, 0, "loopback byte has the AUX flag");
    // Bit assignment test: 0xa7 sets CTR bit 5, 0xa8 clears it.
    r.command(KBDC_DISABLE_AUX_PORT, &[], 0);
    assert_ne!(r.command(0x20, &[], 1)[0].1 & CTR_AUX_DISABLED, 0);
    r.command(KBDC_ENABLE_AUX_PORT, &[], 0);
    assert_eq!(r.command(0x20, &[], 1)[0].1 & CTR_AUX_DISABLED, 0);
    // AUX IRQ test: with the AUX interrupt on, a loopback raises IRQ 12.
    let ctr = (ctr & !CTR_AUX_DISABLED) | CTR_AUX_INT;
    r.command(KBDC_SET_COMMAND_BYTE, &[ctr], 0);
    let before = Rig::edges(&r.irq12);
    r.command(KBDC_WRITE_AUX_OUTBUF, &[0xa5], 0);
    assert_eq!(Rig::edges(&r.irq12), before + 1);
    assert_eq!(bytes(&r.flush()), [0xa5]);
    // Port tests.
    assert_eq!(bytes(&r.command(KBDC_TEST_AUX_PORT, &[], 1)), [0]);
    assert_eq!(bytes(&r.command(KBDC_TEST_KBD_PORT, &[], 1)), [0]);
    // i8042_enable_kbd_port, then atkbd: reset and identify, each byte
    // signalled on IRQ 1.
    let ctr = (ctr & !CTR_KBD_DISABLED) | CTR_KBD_INT;
    r.command(KBDC_SET_COMMAND_BYTE, &[ctr], 0);
    let before = Rig::edges(&r.irq1);
    r.outb(KBD_DATA_PORT, 0xff);
    assert_eq!(Rig::edges(&r.irq1), before + 1, "one byte, one edge");
    assert_eq!(r.inb(KBD_DATA_PORT), PS2_ACK);
    assert_eq!(Rig::edges(&r.irq1), before + 2);
    assert_eq!(r.inb(KBD_DATA_PORT), PS2_BAT_OK);
    assert_eq!(r.status() & STS_OUTPUT_FULL, 0);
    // Translated, the MF2 ID 0xab 0x83 reads 0xab 0x41 (what atkbd
    // expects behind a translating controller).
    r.outb(KBD_DATA_PORT, 0xf2);
    assert_eq!(bytes(&r.flush()), [PS2_ACK, 0xab, 0x41]);
    // psmouse through 0xd4: reset, ID; replies carry the AUX flag and
    // raise IRQ 12, not IRQ 1.
    let (k1, k12) = (Rig::edges(&r.irq1), Rig::edges(&r.irq12));
    r.command(KBDC_WRITE_TO_AUX, &[0xff], 0);
    let got = r.flush();
    assert_eq!(bytes(&got), [PS2_ACK, PS2_BAT_OK, 0x00]);
    assert!(got.iter().all(|(s, _)| s & STS_AUX_DATA != 0));
    assert_eq!(Rig::edges(&r.irq12), k12 + 3);
    assert_eq!(Rig::edges(&r.irq1), k1);
    assert!(r.vm.exits().is_empty());
}

#[test]
fn keys_are_translated_to_set_1_and_raise_irq1() {
    let mut r = Rig::new();
    r.command(
        KBDC_SET_COMMAND_BYTE,
        &[CTR_TRANSLATE | CTR_KBD_INT | CTR_SYS_FLAG],
        0,
    );
    r.k.key_event(true, u32::from(b'a'), 0);
    assert_eq!(Rig::edges(&r.irq1), 1);
    r.k.key_event(false, u32::from(b'a'), 0);
    r.k.key_event(true, 0, 0x80 | 0x48); // XT Up
    r.k.key_event(false, 0, 0x80 | 0x48);
    assert_eq!(bytes(&r.flush()), [0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
    assert_eq!(Rig::edges(&r.irq1), 6, "one edge per byte");
    // Without translation the guest sees set 2.
    r.command(KBDC_SET_COMMAND_BYTE, &[CTR_SYS_FLAG], 0);
    r.k.key_event(true, 0xffc4, 0); // F7
    r.k.key_event(false, 0xffc4, 0);
    assert_eq!(bytes(&r.flush()), [0x83, 0xf0, 0x83]);
    // Raw scancodes, translated like any other set-2 bytes.
    r.command(KBDC_SET_COMMAND_BYTE, &[CTR_TRANSLATE], 0);
    r.k.key_scancodes(&[0x1c, 0xf0, 0x1c, 0x84]);
    assert_eq!(bytes(&r.flush()), [0x1e, 0x9e, 0x54]);
    assert_eq!(Rig::edges(&r.irq1), 6, "interrupt disabled: no edge");
}

#[test]
fn translation_table_matches_the_8042() {
    for (set2, set1) in [
        (0x00, 0xff),
        (0x01, 0x43),
        (0x02, 0x41),
        (0x08, 0x64),
        (0x1c, 0x1e),
        (0x5a, 0x1c),
        (0x76, 0x01),
        (0x7f, 0x54),
        (0x83, 0x41),
        (0x84, 0x54),
        (0xe0, 0xe0),
        (0xfa, 0xfa),
    ] {
        assert_eq!(TRANSLATION[set2], set1, "set-2 {set2:#04x}");
    }
}

#[test]
fn mouse_motion_on_irq12_and_port_gating() {
    let mut r = Rig::new();
    r.command(KBDC_SET_COMMAND_BYTE, &[CTR_AUX_INT | CTR_KBD_INT], 0);
    r.command(KBDC_WRITE_TO_AUX, &[0xf4], 0);
    assert_eq!(bytes(&r.flush()), [PS2_ACK]);
    let before = Rig::edges(&r.irq12);
    r.k.mouse_motion(3, 4, BUTTON_LEFT);
    let got = r.flush();
    assert_eq!(bytes(&got), [0x09, 3, 4]);
    assert!(got.iter().all(|(s, _)| s & STS_AUX_DATA != 0));
    assert_eq!(Rig::edges(&r.irq12), before + 3);
    // A disabled AUX port holds the motion back.
    r.command(KBDC_DISABLE_AUX_PORT, &[], 0);
    r.k.mouse_motion(1, 0, 0);
    assert!(r.flush().is_empty());
    r.command(KBDC_ENABLE_AUX_PORT, &[], 0);
    r.k.pointer_event(10, 10, 0);
    assert_eq!(bytes(&r.flush()), [0x08, 1, 0]);
    // A disabled keyboard port drops key events.
    r.command(KBDC_DISABLE_KBD_PORT, &[], 0);
    r.k.key_event(true, u32::from(b'a'), 0);
    assert!(r.flush().is_empty());
}

#[test]
fn controller_reply_does_not_lose_a_device_byte() {
    let mut r = Rig::new();
    r.outb(KBD_DATA_PORT, 0xee); // echo
    assert_eq!(r.status() & STS_OUTPUT_FULL, STS_OUTPUT_FULL);
    r.outb(KBD_STS_CTL_PORT, KBDC_TEST_CTRL);
    assert_eq!(r.inb(KBD_DATA_PORT), 0x55);
    assert_eq!(r.inb(KBD_DATA_PORT), 0xee);
    // Empty: the last byte again, no OBF.
    assert_eq!(r.inb(KBD_DATA_PORT), 0xee);
    assert_eq!(r.status() & STS_OUTPUT_FULL, 0);
    // A new command drops an unread reply.
    r.outb(KBD_STS_CTL_PORT, KBDC_TEST_CTRL);
    r.outb(KBD_STS_CTL_PORT, KBDC_READ_INPORT);
    assert_eq!(bytes(&r.flush()), [0]);
}

#[test]
fn ram_outport_and_enabling_an_interrupt_late() {
    let mut r = Rig::new();
    r.command(0x65, &[0xa5], 0);
    assert_eq!(bytes(&r.command(0x25, &[], 1)), [0xa5]);
    r.command(KBDC_WRITE_OUTPORT, &[0x03], 0);
    assert_eq!(bytes(&r.command(KBDC_READ_OUTPORT, &[], 1)), [0x03]);
    // 0xd2 with IRQ 1 masked, then unmasked: the edge comes then.
    r.command(KBDC_WRITE_KBD_OUTBUF, &[0x42], 0);
    assert_eq!(Rig::edges(&r.irq1), 0);
    r.command(KBDC_SET_COMMAND_BYTE, &[CTR_KBD_INT], 0);
    assert_eq!(Rig::edges(&r.irq1), 1);
    let got = r.flush();
    assert_eq!(bytes(&got), [0x42]);
    assert_eq!(got[0].0 & STS_AUX_DATA, 0);
}

#[test]
fn garbage_never_panics_or_grows_without_bound() {
    let mut r = Rig::new();
    let mut x: u32 = 12345;
    for _ in 0..20000 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        let v = (x >> 16) as u8;
        match (x >> 8) & 3 {
            0 if v != KBDC_RESET => r.outb(KBD_STS_CTL_PORT, v),
            1 => r.outb(KBD_DATA_PORT, v),
            2 => {
                r.inb(KBD_DATA_PORT);
            }
            _ => r.k.mouse_motion(i32::MAX, i32::MIN, v),
        }
        assert!(r.k.injected.len() <= INJECT_MAX);
    }
    let mut w = [0u8; 2];
    r.k.read(KBD_STS_CTL_PORT, 0, &mut w);
    assert_eq!(w, [0xff, 0xff]);
    r.k.write(KBD_STS_CTL_PORT, 0, &[0xfe, 0]);
    assert!(r.vm.exits().is_empty(), "only byte writes decode");
}
