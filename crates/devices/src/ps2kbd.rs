//! The PS/2 keyboard behind the i8042, after bhyve's `ps2kbd.c`.
//!
//! It answers the keyboard command set (reset with its self-test result,
//! identify, echo, scancode set, typematic rate, LEDs, enable/disable
//! scanning, defaults) through a 16-byte FIFO that the controller drains,
//! and turns key events into scancodes.
//!
//! Key events come the way bhyve's console delivers them: an XT (set-1)
//! keycode with bit 7 meaning the 0xe0 prefix (QEMU's extended key
//! event, what a VNC client sends when it can), or else an X11 keysym,
//! translated for a US layout. The keyboard sends set 2, or set 1 once the
//! guest selects it.
//!
//! Differs from bhyve: scanning is on after power-on and reset (as a real
//! keyboard; bhyve waits for 0xf4), 0xf0 0x00 reports the current set and
//! sets 1 and 2 are both generated (bhyve acknowledges and keeps set 2),
//! and an unknown command is answered with 0xfe "resend" (bhyve stays
//! silent, so the guest's driver waits for a timeout).

use std::collections::VecDeque;

/// Device replies.
pub const PS2_ACK: u8 = 0xfa;
pub const PS2_BAT_OK: u8 = 0xaa;
pub const PS2_RESEND: u8 = 0xfe;

const CMD_RESET: u8 = 0xff;
const CMD_SET_DEFAULTS: u8 = 0xf6;
const CMD_DISABLE: u8 = 0xf5;
const CMD_ENABLE: u8 = 0xf4;
const CMD_SET_TYPEMATIC: u8 = 0xf3;
const CMD_SEND_ID: u8 = 0xf2;
const CMD_SCANCODE_SET: u8 = 0xf0;
const CMD_ECHO: u8 = 0xee;
const CMD_SET_LEDS: u8 = 0xed;

/// An MF2 keyboard's identity (what 0xf2 answers after its ACK).
pub const KBD_ID: [u8; 2] = [0xab, 0x83];

/// The keyboard's own buffer (bhyve's size).
pub const KBD_FIFO_SIZE: usize = 16;

/// Bit 7 of an XT keycode: the key sends the 0xe0 prefix.
pub const XT_EXTENDED: u8 = 0x80;

/// Set-1 make code → set-2 make code, for codes 0x00–0x7f.
pub(crate) const SET1_TO_SET2: [u8; 128] = [
    0x00, 0x76, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46, 0x45, 0x4e, 0x55, 0x66, 0x0d,
    0x15, 0x1d, 0x24, 0x2d, 0x2c, 0x35, 0x3c, 0x43, 0x44, 0x4d, 0x54, 0x5b, 0x5a, 0x14, 0x1c, 0x1b,
    0x23, 0x2b, 0x34, 0x33, 0x3b, 0x42, 0x4b, 0x4c, 0x52, 0x0e, 0x12, 0x5d, 0x1a, 0x22, 0x21, 0x2a,
    0x32, 0x31, 0x3a, 0x41, 0x49, 0x4a, 0x59, 0x7c, 0x11, 0x29, 0x58, 0x05, 0x06, 0x04, 0x0c, 0x03,
    0x0b, 0x83, 0x0a, 0x01, 0x09, 0x77, 0x7e, 0x6c, 0x75, 0x7d, 0x7b, 0x6b, 0x73, 0x74, 0x79, 0x69,
    0x72, 0x7a, 0x70, 0x71, 0x84, 0x60, 0x61, 0x78, 0x07, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f,
    0x47, 0x4f, 0x56, 0x5e, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x57, 0x6f,
    0x13, 0x19, 0x39, 0x51, 0x53, 0x5c, 0x5f, 0x62, 0x63, 0x64, 0x65, 0x67, 0x68, 0x6a, 0x6d, 0x6e,
];

/// US layout: the printable ASCII characters on each set-1 key row,
/// unshifted and shifted (the keysym of a printable character is its
/// ASCII code).
const US_ROWS: [(u8, &[u8], &[u8]); 4] = [
    (0x02, b"1234567890-=", b"!@#$%^&*()_+"),
    (0x10, b"qwertyuiop[]", b"QWERTYUIOP{}"),
    (0x1e, b"asdfghjkl;'`", b"ASDFGHJKL:\"~"),
    (0x2b, b"\\zxcvbnm,./", b"|ZXCVBNM<>?"),
];
const SET1_SPACE: u8 = 0x39;

/// X11 keysyms of non-printing keys → XT keycode (bit 7: 0xe0 prefix).
const KEYSYMS: &[(u32, u8)] = &[
    (0xff08, 0x0e),        // BackSpace
    (0xff09, 0x0f),        // Tab
    (0xff0d, 0x1c),        // Return
    (0xff1b, 0x01),        // Escape
    (0xff14, 0x46),        // Scroll_Lock
    (0xff50, 0x80 | 0x47), // Home
    (0xff51, 0x80 | 0x4b), // Left
    (0xff52, 0x80 | 0x48), // Up
    (0xff53, 0x80 | 0x4d), // Right
    (0xff54, 0x80 | 0x50), // Down
    (0xff55, 0x80 | 0x49), // Prior
    (0xff56, 0x80 | 0x51), // Next
    (0xff57, 0x80 | 0x4f), // End
    (0xff63, 0x80 | 0x52), // Insert
    (0xff67, 0x80 | 0x5d), // Menu
    (0xffff, 0x80 | 0x53), // Delete
    (0xff7f, 0x45),        // Num_Lock
    (0xff8d, 0x80 | 0x1c), // KP_Enter
    (0xffaf, 0x80 | 0x35), // KP_Divide
    (0xffaa, 0x37),        // KP_Multiply
    (0xffad, 0x4a),        // KP_Subtract
    (0xffab, 0x4e),        // KP_Add
    (0xffb7, 0x47),        // KP_7
    (0xff95, 0x47),        // KP_Home
    (0xffb8, 0x48),        // KP_8
    (0xff97, 0x48),        // KP_Up
    (0xffb9, 0x49),        // KP_9
    (0xff9a, 0x49),        // KP_Prior
    (0xffb4, 0x4b),        // KP_4
    (0xff96, 0x4b),        // KP_Left
    (0xffb5, 0x4c),        // KP_5
    (0xff9d, 0x4c),        // KP_Begin
    (0xffb6, 0x4d),        // KP_6
    (0xff98, 0x4d),        // KP_Right
    (0xffb1, 0x4f),        // KP_1
    (0xff9c, 0x4f),        // KP_End
    (0xffb2, 0x50),        // KP_2
    (0xff99, 0x50),        // KP_Down
    (0xffb3, 0x51),        // KP_3
    (0xff9b, 0x51),        // KP_Next
    (0xffb0, 0x52),        // KP_0
    (0xff9e, 0x52),        // KP_Insert
    (0xffae, 0x53),        // KP_Decimal
    (0xff9f, 0x53),        // KP_Delete
    (0xffe1, 0x2a),        // Shift_L
    (0xffe2, 0x36),        // Shift_R
    (0xffe3, 0x1d),        // Control_L
    (0xffe4, 0x80 | 0x1d), // Control_R
    (0xffe5, 0x3a),        // Caps_Lock
    (0xffe9, 0x38),        // Alt_L
    (0xffea, 0x80 | 0x38), // Alt_R
    (0xfe03, 0x80 | 0x38), // ISO_Level3_Shift (AltGr)
    (0xffeb, 0x80 | 0x5b), // Super_L
    (0xffec, 0x80 | 0x5c), // Super_R
    (0xffbe, 0x3b),        // F1
    (0xffbf, 0x3c),        // F2
    (0xffc0, 0x3d),        // F3
    (0xffc1, 0x3e),        // F4
    (0xffc2, 0x3f),        // F5
    (0xffc3, 0x40),        // F6
    (0xffc4, 0x41),        // F7
    (0xffc5, 0x42),        // F8
    (0xffc6, 0x43),        // F9
    (0xffc7, 0x44),        // F10
    (0xffc8, 0x57),        // F11
    (0xffc9, 0x58),        // F12
];

/// The XT keycode of an X11 keysym on a US keyboard, if it has one.
pub fn keysym_to_xt(keysym: u32) -> Option<u8> {
    if keysym == u32::from(b' ') {
        return Some(SET1_SPACE);
    }
    if let Ok(c) = u8::try_from(keysym) {
        for (first, plain, shifted) in US_ROWS {
            if let Some(i) = plain
                .iter()
                .position(|&p| p == c)
                .or_else(|| shifted.iter().position(|&s| s == c))
            {
                return Some(first + i as u8);
            }
        }
    }
    KEYSYMS
        .iter()
        .find(|(k, _)| *k == keysym)
        .map(|&(_, xt)| xt)
}

pub struct Ps2Kbd {
    fifo: VecDeque<u8>,
    /// Scanning on: key events are queued.
    enabled: bool,
    /// Command waiting for its parameter byte.
    curcmd: Option<u8>,
    /// The scancode set in use (1, 2 or 3; 3 is answered, sent as 2).
    set: u8,
}

impl Default for Ps2Kbd {
    fn default() -> Self {
        Self::new()
    }
}

impl Ps2Kbd {
    pub fn new() -> Self {
        Ps2Kbd {
            fifo: VecDeque::with_capacity(KBD_FIFO_SIZE),
            enabled: true,
            curcmd: None,
            set: 2,
        }
    }

    /// Bytes waiting for the controller.
    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    /// The next byte for the controller.
    pub fn read(&mut self) -> Option<u8> {
        self.fifo.pop_front()
    }

    /// Whether scanning is on.
    pub fn scanning(&self) -> bool {
        self.enabled
    }

    /// A byte beyond the FIFO's size is dropped, as the keyboard would.
    fn put(&mut self, v: u8) {
        if self.fifo.len() < KBD_FIFO_SIZE {
            self.fifo.push_back(v);
        } else {
            log::debug!("ps2kbd: buffer full, {v:#04x} dropped");
        }
    }

    fn defaults(&mut self) {
        self.fifo.clear();
        self.set = 2;
    }

    /// A byte from the guest (through port 0x60).
    pub fn write(&mut self, v: u8) {
        if let Some(cmd) = self.curcmd.take() {
            match cmd {
                CMD_SCANCODE_SET => match v {
                    0 => {
                        self.put(PS2_ACK);
                        self.put(self.set);
                    }
                    1..=3 => {
                        self.set = v;
                        self.put(PS2_ACK);
                    }
                    _ => self.put(PS2_RESEND),
                },
                // Typematic rate and LEDs: accepted, nothing to show.
                _ => self.put(PS2_ACK),
            }
            return;
        }
        match v {
            CMD_RESET => {
                self.defaults();
                self.enabled = true;
                self.put(PS2_ACK);
                self.put(PS2_BAT_OK);
            }
            CMD_SET_DEFAULTS => {
                self.defaults();
                self.put(PS2_ACK);
            }
            CMD_DISABLE => {
                self.enabled = false;
                self.put(PS2_ACK);
            }
            CMD_ENABLE => {
                self.enabled = true;
                self.fifo.clear();
                self.put(PS2_ACK);
            }
            CMD_SET_TYPEMATIC | CMD_SCANCODE_SET | CMD_SET_LEDS => {
                self.curcmd = Some(v);
                self.put(PS2_ACK);
            }
            CMD_SEND_ID => {
                self.put(PS2_ACK);
                KBD_ID.iter().for_each(|&b| self.put(b));
            }
            CMD_ECHO => self.put(CMD_ECHO),
            // bhyve acknowledges 0x00 (some drivers send it as a no-op).
            0x00 => self.put(PS2_ACK),
            _ => {
                log::debug!("ps2kbd: unknown command {v:#04x}");
                self.put(PS2_RESEND);
            }
        }
    }

    /// A key pressed (`down`) or released, by XT keycode (bit 7: the 0xe0
    /// prefix). Ignored while scanning is off or when the whole sequence
    /// does not fit (a keyboard never sends half a scancode).
    pub fn key_xt(&mut self, down: bool, xt: u8) {
        if !self.enabled {
            return;
        }
        let ext = xt & XT_EXTENDED != 0;
        let code = xt & !XT_EXTENDED;
        let mut seq = [0u8; 3];
        let mut n = 0;
        if ext {
            seq[n] = 0xe0;
            n += 1;
        }
        if self.set == 1 {
            seq[n] = if down { code } else { code | 0x80 };
            n += 1;
        } else {
            if !down {
                seq[n] = 0xf0;
                n += 1;
            }
            seq[n] = SET1_TO_SET2[usize::from(code)];
            n += 1;
        }
        self.push_scancodes(&seq[..n]);
    }

    /// A key event by X11 keysym; false when the keysym has no key.
    pub fn key_keysym(&mut self, down: bool, keysym: u32) -> bool {
        match keysym_to_xt(keysym) {
            Some(xt) => {
                self.key_xt(down, xt);
                true
            }
            None => {
                log::debug!("ps2kbd: no key for keysym {keysym:#x}");
                false
            }
        }
    }

    /// Raw scancode bytes in the set the guest selected, queued whole or
    /// not at all (and only while scanning is on).
    pub fn push_scancodes(&mut self, bytes: &[u8]) {
        if !self.enabled || self.fifo.len() + bytes.len() > KBD_FIFO_SIZE {
            return;
        }
        self.fifo.extend(bytes.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(k: &mut Ps2Kbd) -> Vec<u8> {
        std::iter::from_fn(|| k.read()).collect()
    }

    #[test]
    fn command_set() {
        let mut k = Ps2Kbd::new();
        k.write(CMD_RESET);
        assert_eq!(drain(&mut k), [PS2_ACK, PS2_BAT_OK]);
        k.write(CMD_SEND_ID);
        assert_eq!(drain(&mut k), [PS2_ACK, 0xab, 0x83]);
        k.write(CMD_ECHO);
        assert_eq!(drain(&mut k), [0xee]);
        k.write(CMD_SET_LEDS);
        k.write(0x07);
        assert_eq!(drain(&mut k), [PS2_ACK, PS2_ACK]);
        k.write(CMD_SET_TYPEMATIC);
        k.write(0x20);
        assert_eq!(drain(&mut k), [PS2_ACK, PS2_ACK]);
        k.write(CMD_SCANCODE_SET);
        k.write(0);
        assert_eq!(drain(&mut k), [PS2_ACK, PS2_ACK, 2]);
        k.write(CMD_SCANCODE_SET);
        k.write(9);
        assert_eq!(drain(&mut k), [PS2_ACK, PS2_RESEND]);
        k.write(0x00);
        k.write(0xd7);
        assert_eq!(drain(&mut k), [PS2_ACK, PS2_RESEND]);
        k.write(CMD_DISABLE);
        assert!(!k.scanning());
        k.write(CMD_ENABLE);
        assert!(k.scanning());
        assert_eq!(drain(&mut k), [PS2_ACK], "enable flushes the buffer");
    }

    #[test]
    fn keys_in_set_2_and_set_1() {
        let mut k = Ps2Kbd::new();
        assert!(k.key_keysym(true, u32::from(b'a')));
        assert!(k.key_keysym(false, u32::from(b'A')));
        assert_eq!(drain(&mut k), [0x1c, 0xf0, 0x1c]);
        k.key_keysym(true, 0xff52); // Up: e0 75
        k.key_keysym(false, 0xff52);
        assert_eq!(drain(&mut k), [0xe0, 0x75, 0xe0, 0xf0, 0x75]);
        k.key_keysym(true, 0xffc4); // F7's set-2 code is above 0x7f
        assert_eq!(drain(&mut k), [0x83]);
        assert!(!k.key_keysym(true, 0x1234_5678));
        assert!(!k.key_keysym(true, 0x01), "control characters have no key");
        assert!(k.is_empty());

        k.write(CMD_SCANCODE_SET);
        k.write(1);
        drain(&mut k);
        k.key_xt(true, 0x1e);
        k.key_xt(false, 0x1e);
        k.key_xt(false, XT_EXTENDED | 0x48);
        assert_eq!(drain(&mut k), [0x1e, 0x9e, 0xe0, 0xc8]);
    }

    #[test]
    fn us_layout_matches_the_set1_rows() {
        for (c, xt) in [
            (b'1', 0x02),
            (b'=', 0x0d),
            (b'q', 0x10),
            (b'}', 0x1b),
            (b'`', 0x29),
            (b'"', 0x28),
            (b'|', 0x2b),
            (b'?', 0x35),
            (b' ', 0x39),
        ] {
            assert_eq!(keysym_to_xt(u32::from(c)), Some(xt), "{}", c as char);
        }
        assert_eq!(keysym_to_xt(0xffc9), Some(0x58), "F12");
    }

    #[test]
    fn disabled_or_full_keyboard_sends_nothing_partial() {
        let mut k = Ps2Kbd::new();
        k.write(CMD_DISABLE);
        drain(&mut k);
        k.key_xt(true, 0x1e);
        assert!(k.is_empty());
        k.write(CMD_ENABLE);
        drain(&mut k);
        for _ in 0..10 {
            k.key_xt(false, XT_EXTENDED | 0x48); // 3 bytes each
        }
        assert_eq!(k.len(), 15, "five whole sequences fit in 16 bytes");
        k.push_scancodes(&[1, 2]);
        assert_eq!(k.len(), 15);
        for _ in 0..20 {
            k.write(CMD_ECHO);
        }
        assert_eq!(k.len(), KBD_FIFO_SIZE);
    }
}
