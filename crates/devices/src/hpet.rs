//! The HPET at 0xfed00000, as bhyve's in-kernel `vhpet.c` presents it.
//!
//! - 8 timers, vendor 0x8086, revision 1, a 32-bit main counter at
//!   2^24 Hz (period 59604644 fs); no LegacyReplacement routing (the
//!   capability bit is clear and the config bit reads back 0).
//! - Each timer: periodic capable, FSB (MSI) capable, 32-bit; its
//!   interrupt may go to the upper four I/O APIC pins (20–23 on KVM's
//!   24-pin I/O APIC; bhyve's has 32 pins and so offers 24–31), pin 0
//!   meaning "not routed". Edge timers pulse their pin, level timers hold
//!   it and set their `GEN_INT_STS` bit until the guest writes 1 to it.
//! - Registers take 4- or 8-byte naturally aligned accesses; anything
//!   else reads 0 and writes nothing.
//!
//! While the counter runs every timer has a deadline (a one-shot timer
//! whose comparator passed waits for the counter to wrap, as hardware
//! does); [`Timed::expire`] fires the ones that passed and re-arms them.

use std::sync::Arc;

use crate::timer::{ns_to_ticks, ticks_to_ns, Clock, Timed, TimerWake};
use crate::{BusDevice, IrqLine, MsiSink};

pub const HPET_BASE: u64 = 0xfed0_0000;
pub const HPET_LEN: u64 = 0x400;
pub const HPET_FREQ: u64 = 1 << 24;
pub const HPET_TIMERS: usize = 8;
const FS_PER_S: u64 = 1_000_000_000_000_000;
/// The shortest interval at which a periodic timer's host thread wakes.
/// A guest may program a period of one tick (60 ns); without a floor the
/// timer thread would spin on deadlines already past. Missed periods are
/// coalesced (the comparator still advances by whole periods), as KVM
/// does for its LAPIC timer (whose floor is 200 µs).
const MIN_PERIODIC_WAKE_NS: u64 = 100_000;

const CAPABILITIES: u64 = 0x00;
const CONFIG: u64 = 0x10;
const ISR: u64 = 0x20;
const MAIN_COUNTER: u64 = 0xf0;
const TIMER_BASE: u64 = 0x100;
const TIMER_STRIDE: u64 = 0x20;
const TIMER_CAP_CNF: u64 = 0x0;
const TIMER_COMPARATOR: u64 = 0x8;
const TIMER_FSB_VAL: u64 = 0x10;

const CNF_ENABLE: u64 = 1 << 0;

const TCNF_INT_TYPE_LEVEL: u64 = 1 << 1;
const TCNF_INT_ENB: u64 = 1 << 2;
const TCNF_TYPE_PERIODIC: u64 = 1 << 3;
const TCAP_PER_INT: u64 = 1 << 4;
const TCNF_VAL_SET: u64 = 1 << 6;
const TCNF_INT_ROUTE: u64 = 0x1f << 9;
const TCNF_FSB_EN: u64 = 1 << 14;
const TCAP_FSB_INT_DEL: u64 = 1 << 15;
const TCNF_WRITABLE: u64 = TCNF_INT_TYPE_LEVEL
    | TCNF_INT_ENB
    | TCNF_TYPE_PERIODIC
    | TCNF_VAL_SET
    | TCNF_INT_ROUTE
    | TCNF_FSB_EN;

/// The General Capabilities and ID register.
pub fn capabilities() -> u64 {
    let mut cap = 0x8086 << 16; // vendor
    cap |= (HPET_TIMERS as u64 - 1) << 8; // last timer's number
    cap |= 1; // revision; COUNT_SIZE_CAP and LEG_RT_CAP stay clear
    cap | (FS_PER_S / HPET_FREQ) << 32
}

/// The I/O APIC pins a timer may use, given the I/O APIC's pin count:
/// bhyve's rule (the four highest pins, or 24–31 with 32 or more).
pub fn allowed_pins(pincount: usize) -> u32 {
    match pincount {
        32.. => 0xff00_0000,
        20..=31 => 0xf << (pincount - 4),
        _ => 0,
    }
}

#[derive(Debug, Clone, Default)]
struct Timer {
    cap_config: u64,
    /// FSB route: address in the high half, data in the low half.
    msireg: u64,
    compval: u32,
    /// The period of a periodic timer (0 for one-shot).
    comprate: u32,
    /// When the counter reaches `compval`, while it runs.
    deadline: Option<u64>,
}

impl Timer {
    fn periodic(&self) -> bool {
        self.cap_config & TCNF_TYPE_PERIODIC != 0
    }
    fn msi(&self) -> bool {
        self.cap_config & (TCAP_FSB_INT_DEL | TCNF_FSB_EN) == TCAP_FSB_INT_DEL | TCNF_FSB_EN
    }
    fn level(&self) -> bool {
        self.cap_config & TCNF_INT_TYPE_LEVEL != 0
    }
    /// The I/O APIC pin, 0 when not routed (or using MSI).
    fn pin(&self) -> usize {
        if self.msi() {
            0
        } else {
            ((self.cap_config & TCNF_INT_ROUTE) >> 9) as usize
        }
    }
}

pub struct Hpet {
    clock: Arc<dyn Clock>,
    /// Indexed by I/O APIC pin.
    pins: Vec<Arc<dyn IrqLine>>,
    msi: Option<Arc<dyn MsiSink>>,
    wake: Option<Arc<TimerWake>>,
    config: u64,
    isr: u64,
    /// The counter when it was last started, stopped or written...
    countbase: u32,
    /// ...and the clock then (meaningful while it runs).
    countbase_ns: u64,
    timers: [Timer; HPET_TIMERS],
}

impl Hpet {
    /// `pins[n]` drives I/O APIC pin n; `msi` delivers FSB interrupts
    /// (without it FSB-enabled timers stay silent).
    pub fn new(
        clock: Arc<dyn Clock>,
        pins: Vec<Arc<dyn IrqLine>>,
        msi: Option<Arc<dyn MsiSink>>,
    ) -> Self {
        let allowed = u64::from(allowed_pins(pins.len()));
        let timer = Timer {
            cap_config: allowed << 32 | TCAP_PER_INT | TCAP_FSB_INT_DEL,
            compval: u32::MAX,
            ..Timer::default()
        };
        Self {
            clock,
            pins,
            msi,
            wake: None,
            config: 0,
            isr: 0,
            countbase: 0,
            countbase_ns: 0,
            timers: std::array::from_fn(|_| timer.clone()),
        }
    }

    /// Whom to tell when deadlines change (the [`crate::timer::TimerThread`]).
    pub fn set_wake(&mut self, wake: Arc<TimerWake>) {
        self.wake = Some(wake);
    }

    fn enabled(&self) -> bool {
        self.config & CNF_ENABLE != 0
    }

    fn counter_at(&self, now: u64) -> u32 {
        if !self.enabled() {
            return self.countbase;
        }
        let ticks = ns_to_ticks(now.saturating_sub(self.countbase_ns), HPET_FREQ);
        self.countbase.wrapping_add(ticks as u32)
    }

    fn interrupt(&mut self, n: usize) {
        let t = &self.timers[n];
        if t.cap_config & TCNF_INT_ENB == 0 || self.isr & (1 << n) != 0 {
            return;
        }
        if t.msi() {
            if let Some(m) = &self.msi {
                m.send_msi(t.msireg >> 32, t.msireg as u32);
            }
            return;
        }
        let Some(line) = self.pins.get(t.pin()).filter(|_| t.pin() != 0) else {
            return;
        };
        if t.level() {
            self.isr |= 1 << n;
            line.set_level(true);
        } else {
            line.pulse();
        }
    }

    fn clear_isr(&mut self, n: usize, pin: usize) {
        if self.isr & (1 << n) != 0 {
            self.isr &= !(1 << n);
            if let Some(line) = self.pins.get(pin) {
                line.set_level(false);
            }
        }
    }

    /// Arms timer `n` from `counter` at time `now`: a periodic timer's
    /// comparator first moves to its next multiple of the period past
    /// `counter`; a one-shot comparator equal to `counter` waits a wrap.
    fn start_timer(&mut self, n: usize, counter: u32, now: u64) {
        let base_ns = self.countbase_ns;
        let t = &mut self.timers[n];
        if let Some(periods) = counter.wrapping_sub(t.compval).checked_div(t.comprate) {
            let k = periods.wrapping_add(1);
            t.compval = t.compval.wrapping_add(k.wrapping_mul(t.comprate));
        }
        let delta = match t.compval.wrapping_sub(counter) {
            0 => 1u64 << 32,
            d => u64::from(d),
        };
        // Counted from the base, so the deadline is the very first
        // nanosecond at which the counter reads `compval`.
        let elapsed = ns_to_ticks(now.saturating_sub(base_ns), HPET_FREQ);
        let at = ticks_to_ns(elapsed.saturating_add(delta), HPET_FREQ);
        t.deadline = Some(base_ns.saturating_add(at));
    }

    fn start_counting(&mut self, now: u64) {
        self.countbase_ns = now;
        for n in 0..HPET_TIMERS {
            self.start_timer(n, self.countbase, now);
        }
    }

    fn stop_counting(&mut self, counter: u32, now: u64) {
        self.countbase = counter;
        for n in 0..HPET_TIMERS {
            // A deadline that passed but was not run yet still fires, or
            // a one-shot guest would wait a whole counter wrap.
            if self.timers[n].deadline.take().is_some_and(|d| d <= now) {
                self.interrupt(n);
            }
        }
    }

    fn write_timer_config(&mut self, n: usize, data: u64, mask: u64) {
        let old = self.timers[n].clone();
        let new = (old.cap_config & !(mask & TCNF_WRITABLE)) | (data & mask & TCNF_WRITABLE);
        if new == old.cap_config {
            return;
        }
        let t = &mut self.timers[n];
        t.cap_config = new;
        let allowed = (t.cap_config >> 32) as u32;
        let pin = t.pin();
        if pin != 0 && allowed & (1 << pin) == 0 {
            t.cap_config &= !TCNF_INT_ROUTE;
        }
        if !t.periodic() {
            t.comprate = 0;
        }
        // A held level must not outlive the configuration that raised it.
        let t = &self.timers[n];
        if t.cap_config & TCNF_INT_ENB == 0 || t.msi() || !t.level() || t.pin() != old.pin() {
            self.clear_isr(n, old.pin());
        }
    }

    fn write_comparator(&mut self, n: usize, data: u64, mask: u64) {
        let t = &mut self.timers[n];
        let (old_val, old_rate) = (t.compval, t.comprate);
        if t.periodic() {
            let v = (u64::from(t.comprate) & !mask) | (data & mask);
            t.comprate = v as u32;
            if t.cap_config & TCNF_VAL_SET != 0 {
                t.compval = v as u32;
            }
        } else {
            let v = (u64::from(t.compval) & !mask) | (data & mask);
            t.compval = v as u32;
        }
        t.cap_config &= !TCNF_VAL_SET;
        if (t.compval, t.comprate) != (old_val, old_rate) && self.enabled() {
            let now = self.clock.now_ns();
            let counter = self.counter_at(now);
            self.start_timer(n, counter, now);
        }
    }

    fn read_reg(&self, offset: u64) -> u64 {
        match offset {
            CAPABILITIES => capabilities(),
            CONFIG => self.config,
            ISR => self.isr,
            MAIN_COUNTER => u64::from(self.counter_at(self.clock.now_ns())),
            o if o >= TIMER_BASE => {
                let n = ((o - TIMER_BASE) / TIMER_STRIDE) as usize;
                let Some(t) = self.timers.get(n) else {
                    return 0;
                };
                match (o - TIMER_BASE) % TIMER_STRIDE {
                    TIMER_CAP_CNF => t.cap_config,
                    TIMER_COMPARATOR => u64::from(t.compval),
                    TIMER_FSB_VAL => t.msireg,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, data: u64, mask: u64) {
        match offset {
            CONFIG => {
                let now = self.clock.now_ns();
                let counter = self.counter_at(now);
                let old = self.config;
                self.config = ((old & !mask) | (data & mask)) & CNF_ENABLE;
                if (old ^ self.config) & CNF_ENABLE != 0 {
                    if self.enabled() {
                        self.start_counting(now);
                    } else {
                        self.stop_counting(counter, now);
                    }
                }
            }
            ISR => {
                let clear = self.isr & data & mask;
                for n in (0..HPET_TIMERS).filter(|n| clear & (1 << n) != 0) {
                    let pin = self.timers[n].pin();
                    self.clear_isr(n, pin);
                }
            }
            MAIN_COUNTER => {
                let now = self.clock.now_ns();
                let v = (u64::from(self.counter_at(now)) & !mask) | (data & mask);
                self.countbase = v as u32;
                if self.enabled() {
                    self.start_counting(now);
                }
            }
            o if o >= TIMER_BASE => {
                let n = ((o - TIMER_BASE) / TIMER_STRIDE) as usize;
                if n >= HPET_TIMERS {
                    return;
                }
                match (o - TIMER_BASE) % TIMER_STRIDE {
                    TIMER_CAP_CNF => self.write_timer_config(n, data, mask),
                    TIMER_COMPARATOR => self.write_comparator(n, data, mask),
                    TIMER_FSB_VAL => {
                        let t = &mut self.timers[n];
                        t.msireg = (t.msireg & !mask) | (data & mask);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The 8-byte register holding `offset` and the mask of the bytes a
    /// `size`-byte access touches, or None for a malformed access.
    fn decode(offset: u64, size: usize) -> Option<(u64, u64, u32)> {
        if !(size == 4 || size == 8) || !offset.is_multiple_of(size as u64) || offset >= HPET_LEN {
            return None;
        }
        let shift = if size == 4 {
            (offset & 4) as u32 * 8
        } else {
            0
        };
        let mask = if size == 4 {
            0xffff_ffffu64 << shift
        } else {
            !0
        };
        // A 4-byte access at +4 is the high half of the 8-byte register
        // (so FSB_ADDR is the high half of the FSB route).
        Some((offset & !7, mask, shift))
    }
}

impl BusDevice for Hpet {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let v = match Self::decode(offset, data.len()) {
            Some((reg, _, shift)) => self.read_reg(reg) >> shift,
            None => 0,
        };
        let bytes = v.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some((reg, mask, shift)) = Self::decode(offset, data.len()) else {
            log::debug!("hpet: ignoring {}-byte write at {offset:#x}", data.len());
            return;
        };
        let mut b = [0u8; 8];
        b[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(b) << shift;
        self.write_reg(reg, v, mask);
        if let Some(w) = &self.wake {
            w.wake();
        }
    }
}

impl Timed for Hpet {
    fn next_deadline(&self) -> Option<u64> {
        self.timers.iter().filter_map(|t| t.deadline).min()
    }

    fn expire(&mut self) {
        if !self.enabled() {
            return;
        }
        let now = self.clock.now_ns();
        for n in 0..HPET_TIMERS {
            if self.timers[n].deadline.is_some_and(|d| d <= now) {
                let counter = self.counter_at(now);
                self.start_timer(n, counter, now);
                let t = &mut self.timers[n];
                if t.comprate != 0 {
                    t.deadline = t
                        .deadline
                        .map(|d| d.max(now.saturating_add(MIN_PERIODIC_WAKE_NS)));
                }
                self.interrupt(n);
            }
        }
    }
}

#[cfg(test)]
#[path = "hpet_tests.rs"]
mod tests;
