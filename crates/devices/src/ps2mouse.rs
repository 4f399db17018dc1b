//! The PS/2 mouse on the i8042's auxiliary port, after bhyve's
//! `ps2mouse.c`: a standard three-button mouse (ID 0x00) with the PS/2
//! command set (reset, defaults, enable/disable reporting, sample rate,
//! resolution, scaling, stream and remote mode, status request, read
//! data) and three-byte movement packets in a 16-byte FIFO.
//!
//! Motion arrives either relative ([`Ps2Mouse::motion`]) or as absolute
//! pointer positions, as bhyve's VNC console delivers them
//! ([`Ps2Mouse::pointer`]: the mouse reports the difference from the last
//! position). Buttons use the VNC mask: bit 0 left, bit 1 middle, bit 2
//! right.
//!
//! As bhyve: every byte the guest sends discards unread output, unknown
//! commands are acknowledged, and while the controller's auxiliary port is
//! disabled nothing is reported (motion accumulates). Differs: reporting is
//! off after reset and "set defaults" (as a real mouse; bhyve turns it on),
//! remote mode stops streaming, and out-of-range deltas saturate at
//! −256/255 with the overflow bit.

use std::collections::VecDeque;

use crate::ps2kbd::{PS2_ACK, PS2_BAT_OK};

const CMD_RESET: u8 = 0xff;
const CMD_SET_DEFAULTS: u8 = 0xf6;
const CMD_DISABLE: u8 = 0xf5;
const CMD_ENABLE: u8 = 0xf4;
const CMD_SET_SAMPLE_RATE: u8 = 0xf3;
const CMD_SEND_ID: u8 = 0xf2;
const CMD_SET_REMOTE_MODE: u8 = 0xf0;
const CMD_READ_DATA: u8 = 0xeb;
const CMD_SET_STREAM_MODE: u8 = 0xea;
const CMD_STATUS_REQUEST: u8 = 0xe9;
const CMD_SET_RESOLUTION: u8 = 0xe8;
const CMD_SET_SCALING_2_1: u8 = 0xe7;
const CMD_SET_SCALING_1_1: u8 = 0xe6;

/// A standard PS/2 mouse.
pub const MOUSE_ID: u8 = 0x00;
pub const MOUSE_FIFO_SIZE: usize = 16;

/// VNC button mask bits.
pub const BUTTON_LEFT: u8 = 1 << 0;
pub const BUTTON_MIDDLE: u8 = 1 << 1;
pub const BUTTON_RIGHT: u8 = 1 << 2;

// Packet byte 0.
const PKT_Y_OVERFLOW: u8 = 0x80;
const PKT_X_OVERFLOW: u8 = 0x40;
const PKT_Y_SIGN: u8 = 0x20;
const PKT_X_SIGN: u8 = 0x10;
const PKT_ALWAYS_ONE: u8 = 0x08;

// Status byte 0 (0xe9).
const STS_REMOTE: u8 = 0x40;
const STS_ENABLED: u8 = 0x20;
const STS_SCALING_2_1: u8 = 0x10;

// PS/2 button bits, in packets and the status byte.
const PS2_LEFT: u8 = 0x01;
const PS2_RIGHT: u8 = 0x02;
const PS2_MIDDLE: u8 = 0x04;

const DEFAULT_RESOLUTION: u8 = 2; // 4 counts/mm
const DEFAULT_SAMPLE_RATE: u8 = 100;

pub struct Ps2Mouse {
    fifo: VecDeque<u8>,
    /// Status byte 0 without the buttons: remote, enabled, scaling.
    mode: u8,
    /// PS/2 button bits currently down.
    buttons: u8,
    resolution: u8,
    sample_rate: u8,
    curcmd: Option<u8>,
    /// Motion not reported yet.
    dx: i64,
    dy: i64,
    /// Last absolute position ([`Ps2Mouse::pointer`]).
    last: Option<(i32, i32)>,
    /// The controller's auxiliary port is enabled.
    port_enabled: bool,
}

impl Default for Ps2Mouse {
    fn default() -> Self {
        Self::new()
    }
}

/// A delta as a 9-bit two's complement value: (low byte, sign, overflow).
fn encode_delta(d: i64) -> (u8, bool, bool) {
    let clamped = d.clamp(-256, 255);
    ((clamped & 0xff) as u8, clamped < 0, clamped != d)
}

impl Ps2Mouse {
    pub fn new() -> Self {
        let mut m = Ps2Mouse {
            fifo: VecDeque::with_capacity(MOUSE_FIFO_SIZE),
            mode: 0,
            buttons: 0,
            resolution: 0,
            sample_rate: 0,
            curcmd: None,
            dx: 0,
            dy: 0,
            last: None,
            port_enabled: false,
        };
        m.defaults();
        m
    }

    fn defaults(&mut self) {
        self.fifo.clear();
        self.mode = 0;
        self.resolution = DEFAULT_RESOLUTION;
        self.sample_rate = DEFAULT_SAMPLE_RATE;
        self.dx = 0;
        self.dy = 0;
    }

    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    pub fn read(&mut self) -> Option<u8> {
        self.fifo.pop_front()
    }

    fn put(&mut self, v: u8) {
        if self.fifo.len() < MOUSE_FIFO_SIZE {
            self.fifo.push_back(v);
        }
    }

    /// The controller enabled or disabled its auxiliary port; disabling
    /// drops what the mouse had queued (bhyve's `ps2mouse_toggle`).
    pub fn set_port_enabled(&mut self, on: bool) {
        self.port_enabled = on;
        if !on {
            self.fifo.clear();
        }
    }

    pub fn reporting(&self) -> bool {
        self.mode & STS_ENABLED != 0
    }

    /// Queues one packet with the motion so far, if it fits whole.
    fn packet(&mut self) {
        let (x, xs, xo) = encode_delta(self.dx);
        let (y, ys, yo) = encode_delta(self.dy);
        let mut b0 = PKT_ALWAYS_ONE | self.buttons;
        for (set, bit) in [
            (xs, PKT_X_SIGN),
            (ys, PKT_Y_SIGN),
            (xo, PKT_X_OVERFLOW),
            (yo, PKT_Y_OVERFLOW),
        ] {
            if set {
                b0 |= bit;
            }
        }
        self.dx = 0;
        self.dy = 0;
        if self.fifo.len() + 3 <= MOUSE_FIFO_SIZE {
            self.fifo.extend([b0, x, y]);
        }
    }

    /// A byte from the guest: after 0xd4 to port 0x64, or 0xd3 loopback.
    pub fn write(&mut self, v: u8) {
        self.fifo.clear();
        if let Some(cmd) = self.curcmd.take() {
            match cmd {
                CMD_SET_SAMPLE_RATE => self.sample_rate = v,
                _ => self.resolution = v & 3,
            }
            self.put(PS2_ACK);
            return;
        }
        match v {
            CMD_RESET => {
                self.defaults();
                self.put(PS2_ACK);
                self.put(PS2_BAT_OK);
                self.put(MOUSE_ID);
            }
            CMD_SET_DEFAULTS => {
                self.defaults();
                self.put(PS2_ACK);
            }
            CMD_DISABLE => {
                self.mode &= !STS_ENABLED;
                self.put(PS2_ACK);
            }
            CMD_ENABLE => {
                self.mode |= STS_ENABLED;
                self.put(PS2_ACK);
            }
            CMD_SET_SAMPLE_RATE | CMD_SET_RESOLUTION => {
                self.curcmd = Some(v);
                self.put(PS2_ACK);
            }
            CMD_SEND_ID => {
                self.put(PS2_ACK);
                self.put(MOUSE_ID);
            }
            CMD_SET_REMOTE_MODE => {
                self.mode |= STS_REMOTE;
                self.put(PS2_ACK);
            }
            CMD_SET_STREAM_MODE => {
                self.mode &= !STS_REMOTE;
                self.put(PS2_ACK);
            }
            CMD_READ_DATA => {
                self.put(PS2_ACK);
                self.packet();
            }
            CMD_STATUS_REQUEST => {
                self.put(PS2_ACK);
                self.put(self.mode | self.buttons);
                self.put(self.resolution);
                self.put(self.sample_rate);
            }
            CMD_SET_SCALING_2_1 => {
                self.mode |= STS_SCALING_2_1;
                self.put(PS2_ACK);
            }
            CMD_SET_SCALING_1_1 => {
                self.mode &= !STS_SCALING_2_1;
                self.put(PS2_ACK);
            }
            _ => {
                log::debug!("ps2mouse: unknown command {v:#04x} acknowledged");
                self.put(PS2_ACK);
            }
        }
    }

    /// Relative motion (`dy` positive is up, as PS/2 counts it) with the
    /// buttons now down (VNC mask). Returns whether a packet was queued.
    pub fn motion(&mut self, dx: i32, dy: i32, buttons: u8) -> bool {
        self.dx = self.dx.saturating_add(i64::from(dx));
        self.dy = self.dy.saturating_add(i64::from(dy));
        self.buttons = 0;
        for (vnc, ps2) in [
            (BUTTON_LEFT, PS2_LEFT),
            (BUTTON_MIDDLE, PS2_MIDDLE),
            (BUTTON_RIGHT, PS2_RIGHT),
        ] {
            if buttons & vnc != 0 {
                self.buttons |= ps2;
            }
        }
        if !self.reporting() || self.mode & STS_REMOTE != 0 || !self.port_enabled {
            return false;
        }
        let before = self.fifo.len();
        self.packet();
        self.fifo.len() > before
    }

    /// An absolute pointer position (screen coordinates, y growing
    /// downwards), as a VNC client sends it; the first one only sets the
    /// origin for the buttons' sake.
    pub fn pointer(&mut self, x: i32, y: i32, buttons: u8) -> bool {
        let (dx, dy) = match self.last {
            Some((lx, ly)) => (x.saturating_sub(lx), ly.saturating_sub(y)),
            None => (0, 0),
        };
        self.last = Some((x, y));
        self.motion(dx, dy, buttons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Ps2Mouse) -> Vec<u8> {
        std::iter::from_fn(|| m.read()).collect()
    }

    fn ready() -> Ps2Mouse {
        let mut m = Ps2Mouse::new();
        m.set_port_enabled(true);
        m.write(CMD_ENABLE);
        drain(&mut m);
        m
    }

    #[test]
    fn linux_psmouse_probe() {
        let mut m = Ps2Mouse::new();
        m.write(CMD_RESET);
        assert_eq!(drain(&mut m), [PS2_ACK, PS2_BAT_OK, MOUSE_ID]);
        m.write(CMD_SEND_ID);
        assert_eq!(drain(&mut m), [PS2_ACK, MOUSE_ID]);
        // IntelliMouse knock (200, 100, 80): still a plain mouse.
        // Each byte sent discards what was not read yet: the driver reads
        // every ACK before sending on.
        for rate in [200, 100, 80] {
            m.write(CMD_SET_SAMPLE_RATE);
            assert_eq!(drain(&mut m), [PS2_ACK]);
            m.write(rate);
            assert_eq!(drain(&mut m), [PS2_ACK]);
        }
        m.write(CMD_SEND_ID);
        assert_eq!(drain(&mut m), [PS2_ACK, MOUSE_ID]);
        for b in [CMD_SET_RESOLUTION, 3, CMD_SET_SCALING_2_1, CMD_ENABLE] {
            m.write(b);
            assert_eq!(drain(&mut m), [PS2_ACK]);
        }
        m.write(CMD_STATUS_REQUEST);
        assert_eq!(
            drain(&mut m),
            [PS2_ACK, STS_ENABLED | STS_SCALING_2_1, 3, 80]
        );
        m.write(CMD_SET_DEFAULTS);
        m.write(CMD_STATUS_REQUEST);
        // (the defaults' ACK was discarded by the next command)
        assert_eq!(drain(&mut m), [PS2_ACK, 0, 2, 100]);
        m.write(0x42);
        assert_eq!(drain(&mut m), [PS2_ACK]);
    }

    #[test]
    fn packets() {
        let mut m = ready();
        assert!(m.motion(5, -3, BUTTON_LEFT | BUTTON_RIGHT));
        assert_eq!(
            drain(&mut m),
            [PKT_ALWAYS_ONE | PKT_Y_SIGN | PS2_LEFT | PS2_RIGHT, 5, 0xfd]
        );
        assert!(m.motion(300, -1000, BUTTON_MIDDLE));
        assert_eq!(
            drain(&mut m),
            [
                PKT_ALWAYS_ONE | PS2_MIDDLE | PKT_X_OVERFLOW | PKT_Y_OVERFLOW | PKT_Y_SIGN,
                255,
                0x00
            ]
        );
        // Absolute positions: the first sets the origin; y grows down.
        m.pointer(100, 100, 0);
        drain(&mut m);
        m.pointer(110, 90, 0);
        assert_eq!(drain(&mut m), [PKT_ALWAYS_ONE, 10, 10]);
        // Five packets fit, the sixth would not.
        for _ in 0..6 {
            m.motion(1, 1, 0);
        }
        assert_eq!(m.len(), 15);
    }

    #[test]
    fn no_reports_when_disabled_remote_or_port_off() {
        let mut m = Ps2Mouse::new();
        m.set_port_enabled(true);
        assert!(!m.motion(1, 1, 0), "reporting is off after power-on");
        m.write(CMD_ENABLE);
        m.write(CMD_SET_REMOTE_MODE);
        drain(&mut m);
        assert!(!m.motion(2, 0, 0));
        m.write(CMD_READ_DATA);
        assert_eq!(drain(&mut m), [PS2_ACK, PKT_ALWAYS_ONE, 3, 1]);
        m.write(CMD_SET_STREAM_MODE);
        drain(&mut m);
        m.set_port_enabled(false);
        assert!(!m.motion(1, 0, 0));
        m.set_port_enabled(true);
        assert!(m.motion(0, 0, 0));
        assert_eq!(drain(&mut m), [PKT_ALWAYS_ONE, 1, 0], "motion accumulated");
        // A command discards unread output.
        m.motion(1, 0, 0);
        m.write(CMD_SEND_ID);
        assert_eq!(drain(&mut m), [PS2_ACK, MOUSE_ID]);
    }
}
