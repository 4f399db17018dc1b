use super::*;
use crate::calendar::days_from_civil;
use crate::testutil::RecIrq;
use crate::timer::{ManualClock, MonotonicClock, TimerThread};
use std::sync::Mutex;
use std::time::Duration;

/// Clock time at creation; far from 0 so phases may reach back.
const T0: u64 = 1_000 * NS_PER_SEC;
const S: u64 = NS_PER_SEC;

fn secs(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s)
}

struct Rig {
    rtc: Rtc,
    clock: Arc<ManualClock>,
    irq: Arc<RecIrq>,
}

fn rig_mem(start: i64, nanos: u32, mem: CmosMemory) -> Rig {
    let clock = ManualClock::new();
    clock.set(T0);
    let irq = RecIrq::new();
    let rtc = Rtc::new(
        clock.clone(),
        irq.clone(),
        RtcTime { secs: start, nanos },
        &mem,
    );
    Rig { rtc, clock, irq }
}

fn rig(start: i64) -> Rig {
    rig_mem(start, 0, CmosMemory::default())
}

impl Rig {
    fn rd(&mut self, r: u8) -> u8 {
        self.rtc.write(RTC_PORT, 0, &[r]);
        let mut b = [0u8];
        self.rtc.read(RTC_PORT, 1, &mut b);
        b[0]
    }
    fn wr(&mut self, r: u8, v: u8) {
        self.rtc.write(RTC_PORT, 0, &[r]);
        self.rtc.write(RTC_PORT, 1, &[v]);
    }
    /// (year, month, day, hour, min, sec) fields as read, raw.
    fn fields(&mut self) -> [u8; 7] {
        [
            RTC_CENTURY,
            RTC_YEAR,
            RTC_MONTH,
            RTC_DAY,
            RTC_HRS,
            RTC_MIN,
            RTC_SEC,
        ]
        .map(|r| self.rd(r))
    }
    fn at(&mut self, ns: u64) {
        self.clock.set(T0 + ns);
    }
    /// Runs the deadlines up to `T0 + ns` as the timer thread would,
    /// returning the times (relative to T0) at which IRQ 8 was pulsed.
    /// With `ack`, the guest reads C after each pulse and checks that it
    /// has those bits.
    fn run_to(&mut self, ns: u64, ack: Option<u8>) -> Vec<u64> {
        let mut pulses = Vec::new();
        while let Some(d) = self.rtc.next_deadline().filter(|&d| d <= T0 + ns) {
            assert!(d >= self.clock.now_ns(), "deadline in the past");
            self.clock.set(d);
            let before = self.irq.history().len();
            self.rtc.expire();
            let h = self.irq.history();
            if h.len() > before {
                assert_eq!(&h[before..], &[true, false], "an edge on IRQ 8");
                pulses.push(d - T0);
                if let Some(want) = ack {
                    let c = self.rd(RTC_INTR);
                    assert_eq!(c & want, want, "register C {c:#x} at {}", d - T0);
                }
            }
        }
        self.clock.set(T0 + ns);
        pulses
    }
}

#[test]
fn reset_state_is_bcd_24_hour_from_the_start_time() {
    // A Thursday: day of week 5 (Sunday is 1).
    let mut r = rig(secs(2024, 2, 29, 13, 45, 7));
    assert_eq!(r.fields(), [0x20, 0x24, 0x02, 0x29, 0x13, 0x45, 0x07]);
    assert_eq!(r.rd(RTC_WDAY), 5);
    assert_eq!(r.rd(RTC_STATUSA), 0x20);
    assert_eq!(r.rd(RTC_STATUSB), RTCSB_24HR);
    assert_eq!(r.rd(RTC_INTR), 0);
    assert_eq!(r.rd(RTC_STATUSD), RTCSD_PWR);
    assert_eq!(r.rtc.next_deadline(), None, "no interrupt enabled");
    // Seconds tick, with carries through the date.
    r.at(S - 1);
    assert_eq!(r.rd(RTC_SEC), 0x07);
    r.at(S);
    assert_eq!(r.rd(RTC_SEC), 0x08);
    let mut r = rig(secs(1999, 12, 31, 23, 59, 59));
    r.at(S);
    assert_eq!(r.fields(), [0x20, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]);
}

#[test]
fn seconds_turn_over_with_the_hosts() {
    // 0.6 s into the host's second: the next update is 0.4 s away.
    let mut r = rig_mem(
        secs(2024, 1, 1, 0, 0, 0),
        600_000_000,
        CmosMemory::default(),
    );
    r.at(399_000_000);
    assert_eq!(r.rd(RTC_SEC), 0x00);
    r.at(400_000_000);
    assert_eq!(r.rd(RTC_SEC), 0x01);
    r.at(1_400_000_000);
    assert_eq!(r.rd(RTC_SEC), 0x02);
}

#[test]
fn binary_and_12_hour_formats() {
    // (hour, BCD 12h, binary 12h, binary 24h)
    for (h, bcd12, bin12, bin24) in [
        (0, 0x12, 0x0c, 0),
        (1, 0x01, 0x01, 1),
        (11, 0x11, 0x0b, 11),
        (12, 0x92, 0x8c, 12),
        (13, 0x81, 0x81, 13),
        (23, 0x91, 0x8b, 23),
    ] {
        let mut r = rig(secs(2031, 12, 25, h, 59, 58));
        r.wr(RTC_STATUSB, 0);
        assert_eq!(r.rd(RTC_HRS), bcd12, "hour {h}");
        r.wr(RTC_STATUSB, RTCSB_BIN);
        assert_eq!(r.rd(RTC_HRS), bin12, "hour {h}");
        r.wr(RTC_STATUSB, RTCSB_BIN | RTCSB_24HR);
        assert_eq!(r.rd(RTC_HRS), bin24, "hour {h}");
        assert_eq!(r.fields(), [20, 31, 12, 25, bin24, 59, 58]);
    }
}

#[test]
fn set_freezes_and_the_written_time_runs_on() {
    let start = secs(2024, 6, 1, 10, 0, 0);
    let mut r = rig(start);
    r.wr(RTC_STATUSB, RTCSB_24HR | RTCSB_SET);
    r.at(5 * S);
    assert_eq!(r.rd(RTC_SEC), 0x00, "frozen under SET");
    assert_eq!(r.rd(RTC_STATUSA) & RTCSA_UIP, 0);
    // 2001-09-09 01:46:40 in binary, 12-hour: 1 AM.
    r.wr(RTC_STATUSB, RTCSB_BIN | RTCSB_SET);
    for (reg, v) in [
        (RTC_CENTURY, 20),
        (RTC_YEAR, 1),
        (RTC_MONTH, 9),
        (RTC_DAY, 9),
        (RTC_HRS, 1),
        (RTC_MIN, 46),
        (RTC_SEC, 40),
    ] {
        r.wr(reg, v);
    }
    r.at(7 * S);
    assert_eq!(r.rd(RTC_SEC), 40, "still frozen");
    r.wr(RTC_STATUSB, RTCSB_BIN | RTCSB_24HR);
    assert_eq!(r.fields(), [20, 1, 9, 9, 1, 46, 40]);
    r.at(10 * S);
    assert_eq!(r.fields(), [20, 1, 9, 9, 1, 46, 43]);
    // 12-hour PM with BCD written under SET (the fields keep the format
    // they were shown in when SET came).
    r.wr(RTC_STATUSB, 0);
    r.wr(RTC_STATUSB, RTCSB_SET);
    r.wr(RTC_HRS, 0x91); // 11 PM
    r.wr(RTC_STATUSB, 0);
    assert_eq!(r.rd(RTC_HRS), 0x91);
    r.wr(RTC_STATUSB, RTCSB_24HR);
    assert_eq!(r.rd(RTC_HRS), 0x23);
    assert_eq!(r.rd(RTC_SEC), 0x43);
}

#[test]
fn writes_without_set_move_the_clock_and_bad_times_stop_it() {
    let mut r = rig(secs(2024, 6, 1, 10, 0, 0));
    r.at(S / 2);
    r.wr(RTC_YEAR, 0x99);
    r.wr(RTC_CENTURY, 0x19);
    assert_eq!(r.fields(), [0x19, 0x99, 0x06, 0x01, 0x10, 0x00, 0x00]);
    // The write restarted the second: 1 s after it, not 0.5 s.
    r.at(S + S / 4);
    assert_eq!(r.rd(RTC_SEC), 0x00);
    r.at(S + S / 2);
    assert_eq!(r.rd(RTC_SEC), 0x01);
    // Month 0x13: no such time; the fields stay as written, stopped.
    r.wr(RTC_MONTH, 0x13);
    r.at(10 * S);
    assert_eq!(r.fields(), [0x19, 0x99, 0x13, 0x01, 0x10, 0x00, 0x01]);
    assert_eq!(r.rd(RTC_STATUSA) & RTCSA_UIP, 0);
    // Before 1970, or a 31st of June, is no better.
    r.wr(RTC_MONTH, 0x06);
    r.wr(RTC_DAY, 0x31);
    r.at(12 * S);
    assert_eq!(r.rd(RTC_SEC), 0x01);
    // A valid date starts it again.
    r.wr(RTC_DAY, 0x30);
    r.at(13 * S);
    assert_eq!(r.fields(), [0x19, 0x99, 0x06, 0x30, 0x10, 0x00, 0x02]);
    r.wr(RTC_YEAR, 0x69);
    r.at(20 * S);
    assert_eq!(r.rd(RTC_SEC), 0x02, "1969 is before the epoch: stopped");
    // Seconds' bit 7 is read-only.
    r.wr(RTC_YEAR, 0x70);
    r.wr(RTC_SEC, 0x80 | 0x15);
    assert_eq!(r.rd(RTC_SEC), 0x15);
}

#[test]
fn uip_rises_before_each_update() {
    let mut r = rig(secs(2024, 6, 1, 10, 0, 0));
    let uip = |r: &mut Rig| r.rd(RTC_STATUSA) & RTCSA_UIP != 0;
    assert!(!uip(&mut r));
    r.at(S - UIP_NS - 1);
    assert!(!uip(&mut r));
    r.at(S - UIP_NS);
    assert!(uip(&mut r));
    assert_eq!(r.rd(RTC_SEC), 0x00, "old time while UIP");
    r.at(S);
    assert!(!uip(&mut r));
    assert_eq!(r.rd(RTC_SEC), 0x01);
    // A guest cannot write UIP.
    r.wr(RTC_STATUSA, 0xa6);
    assert_eq!(r.rd(RTC_STATUSA), 0x26);
    // Dividers in reset: no updates and no UIP; out of reset the time
    // goes on from where it stood, the next update 1 s later.
    r.wr(RTC_STATUSA, 0x70);
    r.at(5 * S - UIP_NS / 2);
    assert!(!uip(&mut r));
    assert_eq!(r.rd(RTC_SEC), 0x01);
    r.wr(RTC_STATUSA, 0x20);
    r.at(6 * S - UIP_NS / 2);
    assert!(!uip(&mut r));
    assert_eq!(r.rd(RTC_SEC), 0x02);
}

#[test]
fn periodic_interrupt_follows_the_rate() {
    assert_eq!(periodic_ticks(0), None);
    assert_eq!(periodic_ticks(1), Some(128));
    assert_eq!(periodic_ticks(2), Some(256));
    assert_eq!(periodic_ticks(3), Some(4));
    assert_eq!(periodic_ticks(6), Some(32));
    assert_eq!(periodic_ticks(15), Some(16_384));
    let mut r = rig(secs(2024, 6, 1, 10, 0, 0));
    r.wr(RTC_STATUSA, 0x26); // 1024 Hz
    r.wr(RTC_STATUSB, RTCSB_24HR | RTCSB_PIE);
    let pulses = r.run_to(10_000_000, Some(RTCIR_INT | RTCIR_PERIOD));
    assert_eq!(pulses.len(), 10, "{pulses:?}");
    for (i, t) in pulses.iter().enumerate() {
        let expect = ticks_to_ns(32 * (i as u64 + 1), 32_768);
        assert_eq!(*t, expect);
    }
    // 2 Hz.
    r.wr(RTC_STATUSA, 0x2f);
    let pulses = r.run_to(2_010_000_000, Some(RTCIR_INT | RTCIR_PERIOD));
    assert_eq!(pulses.len(), 4, "{pulses:?}");
    // Rate 0 stops it; so do dividers in reset.
    r.wr(RTC_STATUSA, 0x20);
    assert_eq!(r.rtc.next_deadline(), None);
    r.wr(RTC_STATUSA, 0x76);
    assert_eq!(r.rtc.next_deadline(), None);
    r.wr(RTC_STATUSA, 0x23);
    assert!(r.rtc.next_deadline().is_some());
}

#[test]
fn flags_wait_in_register_c_and_irqf_needs_an_enable() {
    let mut r = rig(secs(2024, 6, 1, 10, 0, 0));
    r.wr(RTC_STATUSA, 0x26);
    // Not enabled: flags are set, nothing is signalled, nothing to time.
    r.at(3 * S);
    assert_eq!(r.rtc.next_deadline(), None);
    assert_eq!(r.rd(RTC_INTR), RTCIR_PERIOD | RTCIR_UPDATE);
    assert_eq!(r.rd(RTC_INTR), 0, "read clears");
    assert!(r.irq.history().is_empty());
    // Enabling the update interrupt: one pulse at the next update, then
    // silence until C is read.
    r.wr(RTC_STATUSB, RTCSB_24HR | RTCSB_UIE);
    assert_eq!(r.rtc.next_deadline(), Some(T0 + 4 * S));
    assert_eq!(r.run_to(6 * S, None), vec![4 * S]);
    assert_eq!(r.rtc.next_deadline(), None, "IRQF waits for the guest");
    assert_eq!(
        r.rd(RTC_INTR),
        RTCIR_INT | RTCIR_PERIOD | RTCIR_UPDATE,
        "the periodic flag rides along"
    );
    assert_eq!(
        r.run_to(8 * S, Some(RTCIR_INT | RTCIR_PERIOD | RTCIR_UPDATE)),
        vec![7 * S, 8 * S]
    );
    // Turning the enable off drops IRQF but keeps the flag.
    r.run_to(9 * S, None);
    r.wr(RTC_STATUSB, RTCSB_24HR);
    assert_eq!(r.rd(RTC_INTR), RTCIR_PERIOD | RTCIR_UPDATE);
    // An enable while its flag is pending raises IRQF (and IRQ 8) at once.
    r.at(10 * S);
    let n = r.irq.history().len();
    r.wr(RTC_STATUSB, RTCSB_24HR | RTCSB_UIE);
    assert_eq!(r.irq.history()[n..], [true, false]);
    // SET clears UIE, and the time stands still: nothing to time.
    r.rd(RTC_INTR);
    r.wr(RTC_STATUSB, RTCSB_24HR | RTCSB_UIE | RTCSB_SET);
    assert_eq!(r.rd(RTC_STATUSB), RTCSB_24HR | RTCSB_SET);
    assert_eq!(r.rtc.next_deadline(), None);
    // C and D ignore writes.
    r.wr(RTC_INTR, 0xff);
    r.wr(RTC_STATUSD, 0);
    assert_eq!((r.rd(RTC_INTR), r.rd(RTC_STATUSD)), (0, RTCSD_PWR));
}

#[test]
fn alarm_interrupt() {
    let mut r = rig(secs(2024, 6, 1, 10, 0, 0));
    r.wr(RTC_SEC_ALARM, 0x03);
    r.wr(RTC_MIN_ALARM, 0x00);
    r.wr(RTC_HRS_ALARM, 0x10);
    r.wr(RTC_STATUSB, RTCSB_24HR | RTCSB_AIE);
    let c = RTCIR_INT | RTCIR_ALARM | RTCIR_UPDATE;
    assert_eq!(r.run_to(10 * S, Some(c)), vec![3 * S]);
    // Don't-care hours and minutes: second 3 of every minute.
    r.wr(RTC_HRS_ALARM, 0xc0);
    r.wr(RTC_MIN_ALARM, 0xff);
    assert_eq!(r.run_to(125 * S, Some(c)), vec![63 * S, 123 * S]);
    // All don't-care: every second. In 12-hour binary the hour compares
    // in that format (10 AM = 0x0a).
    r.wr(RTC_SEC_ALARM, 0xc0);
    r.wr(RTC_STATUSB, RTCSB_BIN | RTCSB_AIE);
    assert_eq!(r.run_to(128 * S, Some(c)).len(), 3);
    r.wr(RTC_SEC_ALARM, 0xff);
    r.wr(RTC_MIN_ALARM, 2);
    r.wr(RTC_HRS_ALARM, 0x8a); // 10 PM: never today
    assert!(r.run_to(200 * S, Some(c)).is_empty());
    r.wr(RTC_HRS_ALARM, 0x0a);
    r.rd(RTC_INTR);
    assert_eq!(
        r.run_to(200 * S, Some(c)),
        Vec::<u64>::new(),
        "minute 2 has passed"
    );
    // An alarm second passed while the guest did not look is still seen
    // (flag only: the interrupt was off).
    r.wr(RTC_STATUSB, RTCSB_BIN);
    r.wr(RTC_MIN_ALARM, 5);
    r.at(400 * S);
    assert_eq!(r.rd(RTC_INTR) & RTCIR_ALARM, RTCIR_ALARM);
}

#[test]
fn nvram_describes_memory_and_cpus() {
    let mb = 1u64 << 20;
    for (lowmem, highmem, cpus, lo, hi, c) in [
        (256 * mb, 0, 1, 0x0f00u16, 0u32, 0u8),
        (3 << 30, 1 << 30, 4, 0xbf00, 0x4000, 3),
        (3 << 30, 3 << 30, 16, 0xbf00, 0xc000, 15),
        (2 * mb, 0, 0, 0, 0, 0),
        (5 << 30, 1 << 50, 300, 0xffff, 0xff_ffff, 0xff),
    ] {
        let mut r = rig_mem(
            0,
            0,
            CmosMemory {
                lowmem,
                highmem,
                cpus,
            },
        );
        let lo_read = u16::from_le_bytes([r.rd(RTC_LMEM_LSB), r.rd(RTC_LMEM_MSB)]);
        let hi_read =
            u32::from_le_bytes([r.rd(RTC_HMEM_LSB), r.rd(RTC_HMEM_SB), r.rd(RTC_HMEM_MSB), 0]);
        assert_eq!((lo_read, hi_read, r.rd(RTC_CPU_COUNT)), (lo, hi, c));
    }
    // The rest is the guest's, and bit 7 of the index is the NMI mask.
    let mut r = rig(0);
    r.wr(0x40, 0x5a);
    r.wr(0x7f, 0xa5);
    assert_eq!(r.rd(0x80 | 0x40), 0x5a);
    assert_eq!(r.rd(0x7f), 0xa5);
    let mut b = [0u8];
    r.rtc.read(RTC_PORT, 0, &mut b);
    assert_eq!(b, [0xff], "the index port reads 0xff");
}

#[test]
fn odd_accesses_never_panic() {
    let mut r = rig(secs(2024, 6, 1, 10, 0, 0));
    for off in 0..4 {
        for size in [0usize, 2, 3, 4, 8] {
            let mut b = vec![0u8; size];
            r.rtc.read(RTC_PORT, off, &mut b);
            assert!(b.iter().all(|&x| x == 0xff));
            r.rtc.write(RTC_PORT, off, &vec![0x0b; size]);
        }
    }
    assert_eq!(r.rd(RTC_STATUSB), RTCSB_24HR, "wide writes are ignored");
    // Every index, every value, any time: no panic, IRQ 8 only pulses.
    let mut t = 0;
    for i in 0..=255u8 {
        for v in [0u8, 0x7f, 0x80, 0xc5, 0xff] {
            r.wr(i, v);
            r.rd(i);
            t += 12_345_678;
            r.at(t);
            r.rtc.expire();
            let _ = r.rtc.next_deadline();
        }
    }
    assert!(r.irq.history().chunks(2).all(|p| p == [true, false]));
}

#[test]
fn timer_thread_delivers_periodic_interrupts() {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let irq = RecIrq::new();
    let mut rtc = Rtc::new(
        clock.clone(),
        irq.clone(),
        RtcTime { secs: 0, nanos: 0 },
        &CmosMemory::default(),
    );
    let wake = TimerWake::new();
    rtc.set_wake(wake.clone());
    let rtc = Arc::new(Mutex::new(rtc));
    let _t = TimerThread::spawn("rtc", rtc.clone(), clock, wake).unwrap();
    let access = |r: u8, v: Option<u8>| {
        let mut d = rtc.lock().unwrap();
        d.write(RTC_PORT, 0, &[r]);
        match v {
            Some(v) => {
                d.write(RTC_PORT, 1, &[v]);
                0
            }
            None => {
                let mut b = [0u8];
                d.read(RTC_PORT, 1, &mut b);
                b[0]
            }
        }
    };
    access(RTC_STATUSA, Some(0x26));
    access(RTC_STATUSB, Some(RTCSB_24HR | RTCSB_PIE));
    // The guest's handler: read C whenever IRQ 8 has pulsed.
    let mut seen = 0;
    let end = std::time::Instant::now() + Duration::from_millis(100);
    while std::time::Instant::now() < end {
        let n = irq.history().len() / 2;
        if n > seen {
            seen = n;
            assert_ne!(access(RTC_INTR, None) & RTCIR_PERIOD, 0);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // ~102 ticks at 1024 Hz; allow for a slow, busy host.
    assert!((20..=110).contains(&seen), "{seen} periodic interrupts");
}
