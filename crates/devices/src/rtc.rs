//! The MC146818 RTC/CMOS at ports 0x70 (index) and 0x71 (data), as
//! bhyve's in-kernel `vrtc.c` and `amd64/rtc.c` present it.
//!
//! - 128 bytes: the time fields (0–9, century at 0x32), registers A–D
//!   (0x0a–0x0d) and NVRAM. Bit 7 of the index (the NMI mask) is dropped;
//!   reading the index port gives 0xff.
//! - The clock starts at the host's time (local or UTC, bhyve's `-u`) and
//!   runs on the [`Clock`]. Fields read in BCD or binary and 12- or
//!   24-hour form per register B. With SET the guest owns the fields;
//!   clearing SET starts the clock from what it wrote. Like QEMU (bhyve
//!   keeps the old time) a field written without SET sets the clock at
//!   once. An impossible date stops the clock until a valid one is
//!   written (bhyve may stop the VM instead).
//! - Time counts only while register A's divider bits are 010 (bhyve).
//!   UIP (A bit 7) is set in the 244 µs before each second's update.
//! - Register C holds PF, AF, UF and IRQF; reading it clears it. As on
//!   the chip (bhyve sets a flag only while its interrupt is enabled),
//!   flags are set whether or not their interrupt is enabled; IRQF when
//!   an enabled one is. IRQF rising pulses ISA IRQ 8 (bhyve pulses the
//!   8259 and the I/O APIC), which stays quiet until C is read.
//! - NVRAM: memory above 16 MiB (below 4 GiB) in 64 KiB units at
//!   0x34/0x35 and above 4 GiB at 0x5b–0x5d (bhyve, for UEFI); the vCPU
//!   count less one at 0x5f (QEMU's convention, for SeaBIOS).
//!
//! Accesses other than one byte (bhyve fails them) read 0xff and write
//! nothing.

use std::sync::Arc;

use crate::calendar::{DateTime, RtcTime};
use crate::timer::{ns_to_ticks, ticks_to_ns, Clock, Timed, TimerWake, NS_PER_SEC};
use crate::{BusDevice, IrqLine};

pub const RTC_PORT: u64 = 0x70;
pub const RTC_PORT_LEN: u64 = 2;
pub const RTC_IRQ: u32 = 8;
pub const CMOS_SIZE: usize = 128;

pub const RTC_SEC: u8 = 0x00;
pub const RTC_SEC_ALARM: u8 = 0x01;
pub const RTC_MIN: u8 = 0x02;
pub const RTC_MIN_ALARM: u8 = 0x03;
pub const RTC_HRS: u8 = 0x04;
pub const RTC_HRS_ALARM: u8 = 0x05;
pub const RTC_WDAY: u8 = 0x06;
pub const RTC_DAY: u8 = 0x07;
pub const RTC_MONTH: u8 = 0x08;
pub const RTC_YEAR: u8 = 0x09;
pub const RTC_STATUSA: u8 = 0x0a;
pub const RTC_STATUSB: u8 = 0x0b;
pub const RTC_INTR: u8 = 0x0c;
pub const RTC_STATUSD: u8 = 0x0d;
pub const RTC_CENTURY: u8 = 0x32;
pub const RTC_LMEM_LSB: u8 = 0x34;
pub const RTC_LMEM_MSB: u8 = 0x35;
pub const RTC_HMEM_LSB: u8 = 0x5b;
pub const RTC_HMEM_SB: u8 = 0x5c;
pub const RTC_HMEM_MSB: u8 = 0x5d;
pub const RTC_CPU_COUNT: u8 = 0x5f;

pub const RTCSA_UIP: u8 = 0x80;
pub const RTCSA_DIVIDER: u8 = 0x70;
/// Divider bits for a 32.768 kHz crystal, counting.
pub const RTCSA_DIVIDER_ON: u8 = 0x20;
pub const RTCSA_RATE: u8 = 0x0f;
pub const RTCSB_SET: u8 = 0x80;
pub const RTCSB_PIE: u8 = 0x40;
pub const RTCSB_AIE: u8 = 0x20;
pub const RTCSB_UIE: u8 = 0x10;
pub const RTCSB_BIN: u8 = 0x04;
pub const RTCSB_24HR: u8 = 0x02;
pub const RTCIR_INT: u8 = 0x80;
pub const RTCIR_PERIOD: u8 = 0x40;
pub const RTCIR_ALARM: u8 = 0x20;
pub const RTCIR_UPDATE: u8 = 0x10;
pub const RTCSD_PWR: u8 = 0x80;

const RTCIR_EVENTS: u8 = RTCIR_PERIOD | RTCIR_ALARM | RTCIR_UPDATE;
/// The time base of the periodic interrupt and of UIP.
const XTAL_HZ: u64 = 32_768;
/// UIP rises this long before an update (8 ticks of the time base).
pub const UIP_NS: u64 = 244_141;
const NS: i64 = NS_PER_SEC as i64;
/// An alarm check looks at most this far back: a day holds every
/// possible hh:mm:ss.
const ALARM_LOOKBACK: i64 = 86_400;
const PM_BIT: u8 = 0x80;

/// What firmware learns about the machine from NVRAM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CmosMemory {
    /// Bytes of RAM below 4 GiB.
    pub lowmem: u64,
    /// Bytes of RAM at 4 GiB and above.
    pub highmem: u64,
    pub cpus: u32,
}

/// The periodic interrupt's period in time-base ticks for rate select
/// `rs` (0: off). Rates 1 and 2 repeat 8 and 9, as on the chip.
pub fn periodic_ticks(rs: u8) -> Option<u64> {
    match rs & RTCSA_RATE {
        0 => None,
        1 => Some(128),
        2 => Some(256),
        rs => Some(1 << (rs - 1)),
    }
}

fn bcd(v: u32) -> u8 {
    (((v / 10 % 10) << 4) | (v % 10)) as u8
}

pub struct Rtc {
    clock: Arc<dyn Clock>,
    irq: Arc<dyn IrqLine>,
    wake: Option<Arc<TimerWake>>,
    index: u8,
    /// Time fields as last shown or written, A–D, alarms and NVRAM.
    regs: [u8; CMOS_SIZE],
    /// The RTC's seconds since 1970 at `base_ns`; None when the guest
    /// wrote a time that cannot be (the clock then stands still).
    base_secs: Option<i64>,
    /// Clock time of the update that made `base_secs` current; updates
    /// follow every second after it while the clock runs.
    base_ns: i64,
    /// When the divider last left reset: the periodic interrupt's phase.
    div_ns: i64,
    /// Events up to here are accounted for in register C.
    seen_ns: i64,
}

impl Rtc {
    /// An RTC showing `start` now, whose NVRAM describes `mem`; `irq` is
    /// ISA IRQ [`RTC_IRQ`]. Registers as bhyve resets them: dividers
    /// counting, BCD, 24-hour, no interrupts.
    pub fn new(
        clock: Arc<dyn Clock>,
        irq: Arc<dyn IrqLine>,
        start: RtcTime,
        mem: &CmosMemory,
    ) -> Self {
        let now = clock.now_ns() as i64;
        let nanos = i64::from(start.nanos.min(999_999_999));
        let mut regs = [0u8; CMOS_SIZE];
        regs[RTC_STATUSA as usize] = RTCSA_DIVIDER_ON;
        regs[RTC_STATUSB as usize] = RTCSB_24HR;
        regs[RTC_STATUSD as usize] = RTCSD_PWR;
        let lomem = (mem.lowmem.saturating_sub(16 << 20) >> 16).min(0xffff);
        regs[RTC_LMEM_LSB as usize] = lomem as u8;
        regs[RTC_LMEM_MSB as usize] = (lomem >> 8) as u8;
        let himem = (mem.highmem >> 16).min(0xff_ffff);
        regs[RTC_HMEM_LSB as usize] = himem as u8;
        regs[RTC_HMEM_SB as usize] = (himem >> 8) as u8;
        regs[RTC_HMEM_MSB as usize] = (himem >> 16) as u8;
        regs[RTC_CPU_COUNT as usize] = mem.cpus.saturating_sub(1).min(0xff) as u8;
        let mut rtc = Self {
            clock,
            irq,
            wake: None,
            index: RTC_STATUSD,
            regs,
            // Seconds turn over in step with the host's.
            base_secs: Some(start.secs),
            base_ns: now - nanos,
            div_ns: now,
            seen_ns: now,
        };
        rtc.render(now);
        rtc
    }

    /// Whom to tell when deadlines change (the [`crate::timer::TimerThread`]).
    pub fn set_wake(&mut self, wake: Arc<TimerWake>) {
        self.wake = Some(wake);
    }

    fn reg(&self, r: u8) -> u8 {
        self.regs[usize::from(r)]
    }

    fn divider_on(&self) -> bool {
        self.reg(RTC_STATUSA) & RTCSA_DIVIDER == RTCSA_DIVIDER_ON
    }

    fn halted(&self) -> bool {
        self.reg(RTC_STATUSB) & RTCSB_SET != 0
    }

    fn running(&self) -> bool {
        self.divider_on() && !self.halted() && self.base_secs.is_some()
    }

    /// Updates since `base_ns` by clock time `t` (negative before it).
    fn updates_at(&self, t: i64) -> i64 {
        (t - self.base_ns).div_euclid(NS)
    }

    /// The RTC's seconds at clock time `now`.
    fn secs_at(&self, now: i64) -> Option<i64> {
        let base = self.base_secs?;
        Some(if self.running() {
            base + self.updates_at(now)
        } else {
            base
        })
    }

    /// Moves the base to the last update before `now`, so the clock can
    /// stop there (or change) without losing its phase.
    fn rebase(&mut self, now: i64) {
        if self.running() {
            let k = self.updates_at(now);
            self.base_secs = self.base_secs.map(|s| s + k);
            self.base_ns += k * NS;
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ns() as i64
    }

    fn encode(&self, v: u32) -> u8 {
        if self.reg(RTC_STATUSB) & RTCSB_BIN != 0 {
            v as u8
        } else {
            bcd(v)
        }
    }

    fn decode(&self, v: u8) -> Option<u32> {
        if self.reg(RTC_STATUSB) & RTCSB_BIN != 0 {
            return Some(v.into());
        }
        let (hi, lo) = (v >> 4, v & 0xf);
        (hi <= 9 && lo <= 9).then_some(u32::from(hi * 10 + lo))
    }

    /// The hour field for a 0–23 hour in the current format.
    fn encode_hour(&self, hour: u32) -> u8 {
        if self.reg(RTC_STATUSB) & RTCSB_24HR != 0 {
            return self.encode(hour);
        }
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if hour >= 12 { PM_BIT } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> Option<u32> {
        if self.reg(RTC_STATUSB) & RTCSB_24HR != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & !PM_BIT)?;
        if !(1..=12).contains(&h) {
            return None;
        }
        Some(h % 12 + if v & PM_BIT != 0 { 12 } else { 0 })
    }

    /// Shows the time of `now` in the time fields, unless the guest owns
    /// them (SET) or they hold an impossible time it wrote.
    fn render(&mut self, now: i64) {
        if self.halted() {
            return;
        }
        if let Some(secs) = self.secs_at(now) {
            self.render_secs(secs);
        }
    }

    fn render_secs(&mut self, secs: i64) {
        let dt = DateTime::from_secs(secs);
        let year = dt.year.rem_euclid(10_000) as u32;
        let fields = [
            (RTC_SEC, self.encode(dt.sec)),
            (RTC_MIN, self.encode(dt.min)),
            (RTC_HRS, self.encode_hour(dt.hour)),
            (RTC_WDAY, self.encode(dt.wday + 1)),
            (RTC_DAY, self.encode(dt.day)),
            (RTC_MONTH, self.encode(dt.month)),
            (RTC_YEAR, self.encode(year % 100)),
            (RTC_CENTURY, self.encode(year / 100)),
        ];
        for (r, v) in fields {
            self.regs[usize::from(r)] = v;
        }
    }

    /// The time the fields hold, if it is a real one from 1970 on.
    fn parse(&self) -> Option<i64> {
        let year = self.decode(self.reg(RTC_YEAR)).filter(|&y| y < 100)?;
        let century = self.decode(self.reg(RTC_CENTURY))?;
        let dt = DateTime {
            year: i64::from(century * 100 + year),
            month: self.decode(self.reg(RTC_MONTH))?,
            day: self.decode(self.reg(RTC_DAY))?,
            hour: self.decode_hour(self.reg(RTC_HRS))?,
            min: self.decode(self.reg(RTC_MIN))?,
            sec: self.decode(self.reg(RTC_SEC))?,
            wday: 0,
        };
        dt.to_secs().filter(|_| dt.year >= 1970)
    }

    /// Starts the clock from the fields' time, now.
    fn set_from_fields(&mut self, now: i64) {
        self.base_secs = self.parse();
        self.base_ns = now;
        if self.base_secs.is_none() {
            log::debug!("rtc: guest wrote an invalid time; the clock stops");
        }
    }

    fn alarm_matches(&self, secs: i64) -> bool {
        let dt = DateTime::from_secs(secs);
        let hit = |alarm: u8, now: u8| alarm >= 0xc0 || alarm == now;
        hit(self.reg(RTC_SEC_ALARM), self.encode(dt.sec))
            && hit(self.reg(RTC_MIN_ALARM), self.encode(dt.min))
            && hit(self.reg(RTC_HRS_ALARM), self.encode_hour(dt.hour))
    }

    fn periodic_period(&self) -> Option<u64> {
        self.divider_on()
            .then(|| periodic_ticks(self.reg(RTC_STATUSA)))
            .flatten()
    }

    /// Periodic ticks since the divider started, by clock time `t`.
    fn periodic_at(&self, t: i64, period: u64) -> u64 {
        let ns = u64::try_from(t - self.div_ns).unwrap_or(0);
        ns_to_ticks(ns, XTAL_HZ) / period
    }

    /// Sets the flags of every update, alarm and periodic tick between
    /// the last call and `now`.
    fn catch_up(&mut self, now: i64) {
        if now <= self.seen_ns {
            return;
        }
        let mut flags = 0;
        if self.running() {
            let (k0, k1) = (self.updates_at(self.seen_ns), self.updates_at(now));
            if k1 > k0 {
                flags |= RTCIR_UPDATE;
                let base = self.base_secs.unwrap_or_default();
                let first = (base + k0 + 1).max(base + k1 - ALARM_LOOKBACK);
                if (first..=base + k1).any(|s| self.alarm_matches(s)) {
                    flags |= RTCIR_ALARM;
                }
            }
        }
        if let Some(p) = self.periodic_period() {
            if self.periodic_at(now, p) > self.periodic_at(self.seen_ns, p) {
                flags |= RTCIR_PERIOD;
            }
        }
        self.seen_ns = now;
        self.regs[usize::from(RTC_INTR)] |= flags;
        self.update_irq();
    }

    /// Sets or clears IRQF from the flags and enables; pulses IRQ 8 when
    /// it rises.
    fn update_irq(&mut self) {
        let c = self.reg(RTC_INTR);
        // Each enable bit of B sits where its flag sits in C.
        let enabled = self.reg(RTC_STATUSB) & RTCIR_EVENTS;
        let want = c & enabled & RTCIR_EVENTS != 0;
        let c_new = (c & RTCIR_EVENTS) | if want { RTCIR_INT } else { 0 };
        self.regs[usize::from(RTC_INTR)] = c_new;
        if want && c & RTCIR_INT == 0 {
            self.irq.pulse();
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.wake {
            w.wake();
        }
    }

    fn write_a(&mut self, v: u8, now: i64) {
        let was_on = self.divider_on();
        self.rebase(now);
        self.regs[usize::from(RTC_STATUSA)] = v & !RTCSA_UIP;
        if !was_on && self.divider_on() {
            // Out of reset: the time stood still meanwhile, and the
            // dividers (the next update and periodic tick) start afresh.
            self.base_ns = now;
            self.div_ns = now;
        }
    }

    fn write_b(&mut self, v: u8, now: i64) {
        let was_halted = self.halted();
        let mut v = v;
        if v & RTCSB_SET != 0 {
            // SET ends update-ended interrupts (the chip clears UIE).
            v &= !RTCSB_UIE;
            if !was_halted {
                // The guest takes the fields as they are at this moment.
                self.render(now);
                self.rebase(now);
            }
        }
        self.regs[usize::from(RTC_STATUSB)] = v;
        if was_halted && !self.halted() {
            self.set_from_fields(now);
        }
        self.update_irq();
    }

    /// A time field written: with SET the guest is composing a time;
    /// otherwise the clock jumps to the fields' new time.
    fn write_time_field(&mut self, r: u8, v: u8, now: i64) {
        let v = if r == RTC_SEC { v & 0x7f } else { v };
        if self.halted() {
            self.regs[usize::from(r)] = v;
            return;
        }
        self.render(now);
        self.regs[usize::from(r)] = v;
        self.set_from_fields(now);
    }

    fn read_data(&mut self, now: i64) -> u8 {
        let r = self.index;
        match r {
            RTC_SEC | RTC_MIN | RTC_HRS | RTC_WDAY | RTC_DAY | RTC_MONTH | RTC_YEAR
            | RTC_CENTURY => {
                self.render(now);
                self.reg(r)
            }
            RTC_STATUSA => {
                let to_update = NS - (now - self.base_ns).rem_euclid(NS);
                let uip = self.running() && to_update <= UIP_NS as i64;
                self.reg(r) | if uip { RTCSA_UIP } else { 0 }
            }
            RTC_INTR => {
                let c = self.reg(r);
                self.regs[usize::from(r)] = 0;
                if c & RTCIR_INT != 0 {
                    self.wake();
                }
                c
            }
            _ => self.reg(r),
        }
    }

    fn write_data(&mut self, v: u8, now: i64) {
        let r = self.index;
        match r {
            RTC_SEC | RTC_MIN | RTC_HRS | RTC_WDAY | RTC_DAY | RTC_MONTH | RTC_YEAR
            | RTC_CENTURY => self.write_time_field(r, v, now),
            RTC_STATUSA => self.write_a(v, now),
            RTC_STATUSB => self.write_b(v, now),
            RTC_INTR | RTC_STATUSD => {}
            _ => self.regs[usize::from(r)] = v,
        }
        self.wake();
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if data.len() != 1 || offset != 1 {
            data.fill(0xff);
            return;
        }
        let now = self.now();
        self.catch_up(now);
        data[0] = self.read_data(now);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data) {
            (0, &[v]) => self.index = v & 0x7f,
            (1, &[v]) => {
                let now = self.now();
                self.catch_up(now);
                self.write_data(v, now);
            }
            _ => log::debug!("rtc: ignoring {}-byte write at +{offset}", data.len()),
        }
    }
}

impl Timed for Rtc {
    /// The next event whose interrupt is enabled; none while IRQF waits
    /// for the guest to read register C (nothing could be signalled).
    fn next_deadline(&self) -> Option<u64> {
        let b = self.reg(RTC_STATUSB);
        if self.reg(RTC_INTR) & RTCIR_INT != 0 {
            return None;
        }
        let update = (self.running() && b & (RTCSB_UIE | RTCSB_AIE) != 0)
            .then(|| self.base_ns + (self.updates_at(self.seen_ns) + 1) * NS);
        let periodic = self
            .periodic_period()
            .filter(|_| b & RTCSB_PIE != 0)
            .map(|p| {
                let next = (self.periodic_at(self.seen_ns, p) + 1).saturating_mul(p);
                self.div_ns + ticks_to_ns(next, XTAL_HZ) as i64
            });
        [update, periodic]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.max(0) as u64)
    }

    fn expire(&mut self) {
        let now = self.now();
        self.catch_up(now);
    }
}

#[cfg(test)]
#[path = "rtc_tests.rs"]
mod tests;
