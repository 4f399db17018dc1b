use super::*;
use crate::testutil::RecIrq;
use crate::timer::ManualClock;
use std::sync::Mutex;

/// 2^24 Hz ticks in ns, exactly: 1e9 / 2^24 = 59.6046... ns.
fn ns(ticks: u64) -> u64 {
    ticks_to_ns(ticks, HPET_FREQ)
}

#[derive(Default)]
struct RecMsi(Mutex<Vec<(u64, u32)>>);
impl MsiSink for RecMsi {
    fn send_msi(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}

struct Rig {
    hpet: Hpet,
    clock: Arc<ManualClock>,
    pins: Vec<Arc<RecIrq>>,
    msi: Arc<RecMsi>,
}

fn rig() -> Rig {
    let clock = ManualClock::new();
    let pins: Vec<Arc<RecIrq>> = (0..24).map(|_| RecIrq::new()).collect();
    let lines = pins.iter().map(|p| p.clone() as Arc<dyn IrqLine>).collect();
    let msi = Arc::new(RecMsi::default());
    let hpet = Hpet::new(clock.clone(), lines, Some(msi.clone()));
    Rig {
        hpet,
        clock,
        pins,
        msi,
    }
}

impl Rig {
    fn r64(&mut self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.hpet.read(HPET_BASE, off, &mut b);
        u64::from_le_bytes(b)
    }
    fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.hpet.read(HPET_BASE, off, &mut b);
        u32::from_le_bytes(b)
    }
    fn w64(&mut self, off: u64, v: u64) {
        self.hpet.write(HPET_BASE, off, &v.to_le_bytes());
    }
    fn w32(&mut self, off: u64, v: u32) {
        self.hpet.write(HPET_BASE, off, &v.to_le_bytes());
    }
    /// Moves time to `t` ns, running deadlines as the timer thread would.
    fn run_to(&mut self, t: u64) {
        while let Some(d) = self.hpet.next_deadline().filter(|&d| d <= t) {
            self.clock.set(d.max(self.clock.now_ns()));
            self.hpet.expire();
        }
        self.clock.set(t);
    }
    fn pulses(&self, pin: usize) -> usize {
        self.pins[pin].history().iter().filter(|&&h| h).count()
    }
}

fn tcnf(n: u64) -> u64 {
    TIMER_BASE + n * TIMER_STRIDE
}
fn tcmp(n: u64) -> u64 {
    tcnf(n) + TIMER_COMPARATOR
}

#[test]
fn capabilities_match_bhyve() {
    let mut r = rig();
    let cap = r.r64(CAPABILITIES);
    assert_eq!(cap, 59_604_644 << 32 | 0x8086_0701);
    assert_eq!(r.r32(4), 59_604_644);
    assert_eq!(r.r32(0), 0x8086_0701);
    // 24 I/O APIC pins: timers may use pins 20-23; periodic and FSB capable.
    for n in 0..8 {
        assert_eq!(
            r.r64(tcnf(n)),
            0x00f0_0000 << 32 | TCAP_FSB_INT_DEL | TCAP_PER_INT
        );
        assert_eq!(r.r64(tcmp(n)), 0xffff_ffff);
    }
    assert_eq!(allowed_pins(32), 0xff00_0000);
    assert_eq!(allowed_pins(16), 0);
    // LegacyReplacement cannot be turned on.
    r.w64(CONFIG, 3);
    assert_eq!(r.r64(CONFIG), 1);
    // Read-only and unknown registers.
    r.w64(CAPABILITIES, 0);
    assert_eq!(r.r64(CAPABILITIES), cap);
    assert_eq!(r.r64(0x30), 0);
    assert_eq!(r.r64(tcnf(8)), 0);
    assert_eq!(r.r64(0x3f8), 0);
}

#[test]
fn counter_runs_at_2_24_hz_only_while_enabled() {
    let mut r = rig();
    r.clock.set(5_000_000);
    assert_eq!(r.r64(MAIN_COUNTER), 0);
    r.w32(CONFIG, 1);
    r.clock.advance(1_000_000_000);
    assert_eq!(r.r64(MAIN_COUNTER), 16_777_216);
    r.clock.advance(1_000); // 16.7 ticks
    assert_eq!(r.r32(MAIN_COUNTER), 16_777_232);
    assert_eq!(r.r32(MAIN_COUNTER + 4), 0);
    // Stopped: frozen.
    r.w32(CONFIG, 0);
    r.clock.advance(1_000_000_000);
    assert_eq!(r.r32(MAIN_COUNTER), 16_777_232);
    // Written (64-bit and by halves), then running from the new value.
    r.w64(MAIN_COUNTER, 0x1_ffff_fff0);
    assert_eq!(r.r64(MAIN_COUNTER), 0xffff_fff0);
    r.w32(MAIN_COUNTER, 0x100);
    assert_eq!(r.r64(MAIN_COUNTER), 0x100);
    r.w32(MAIN_COUNTER, 0xffff_fff0);
    r.w32(CONFIG, 1);
    r.clock.advance(ns(0x20));
    // The 32-bit counter wraps.
    assert_eq!(r.r64(MAIN_COUNTER), 0x10);
}

#[test]
fn one_shot_edge_timer_fires_once_at_its_comparator() {
    let mut r = rig();
    r.w64(tcnf(0), 20 << 9 | TCNF_INT_ENB);
    assert_eq!(r.r64(tcnf(0)) & TCNF_INT_ROUTE, 20 << 9);
    r.w32(tcmp(0), 1000);
    assert_eq!(r.hpet.next_deadline(), None, "counter off: nothing armed");
    r.w32(CONFIG, 1);
    assert_eq!(r.hpet.next_deadline(), Some(ns(1000)));
    r.run_to(ns(999));
    assert_eq!(r.pulses(20), 0);
    r.run_to(ns(1000));
    assert_eq!(r.pins[20].history(), vec![true, false]);
    assert_eq!(r.r64(ISR), 0, "edge interrupts leave GEN_INT_STS alone");
    // Next match only after the 32-bit counter wraps (256 s).
    r.run_to(ns(1000) + 200 * 1_000_000_000);
    assert_eq!(r.pulses(20), 1);
    r.run_to(ns(1000 + (1 << 32)));
    assert_eq!(r.pulses(20), 2);
}

#[test]
fn periodic_timer_fires_every_period() {
    let mut r = rig();
    // As Linux programs it: VAL_SET, comparator = first expiry, then the
    // second comparator write sets the period.
    r.w64(
        tcnf(1),
        21 << 9 | TCNF_INT_ENB | TCNF_TYPE_PERIODIC | TCNF_VAL_SET,
    );
    r.w32(tcmp(1), 1 << 16);
    r.w32(tcmp(1), 1 << 16);
    assert_eq!(r.r64(tcnf(1)) & TCNF_VAL_SET, 0, "VAL_SET self-clears");
    r.w32(CONFIG, 1);
    r.run_to(ns(10 << 16) + 1);
    assert_eq!(r.pulses(21), 10);
    // The comparator reads as the next expiry.
    assert_eq!(r.r32(tcmp(1)), 11 << 16);
    // Interrupts off: the timer keeps time, silently.
    r.w64(tcnf(1), 21 << 9 | TCNF_TYPE_PERIODIC);
    r.run_to(ns(15 << 16) + 1);
    assert_eq!(r.pulses(21), 10);
    // Back to one-shot: the period is forgotten; the armed comparator
    // fires once more, then not before the counter wraps.
    r.w64(tcnf(1), 21 << 9 | TCNF_INT_ENB);
    r.run_to(ns(40 << 16));
    assert_eq!(r.pulses(21), 11);
}

/// A one-tick period cannot make the timer thread spin: wakes are at
/// least `MIN_PERIODIC_WAKE_NS` apart and the comparator keeps its phase.
#[test]
fn tiny_period_is_coalesced_not_spun() {
    let mut r = rig();
    r.w64(
        tcnf(0),
        20 << 9 | TCNF_INT_ENB | TCNF_TYPE_PERIODIC | TCNF_VAL_SET,
    );
    r.w32(tcmp(0), 1);
    r.w32(tcmp(0), 1);
    r.w32(CONFIG, 1);
    let end = 1_000_000;
    let mut wakes = 0;
    while let Some(d) = r.hpet.next_deadline().filter(|&d| d <= end) {
        r.clock.set(d.max(r.clock.now_ns()));
        r.hpet.expire();
        wakes += 1;
        assert!(wakes <= 11, "the timer thread would spin");
    }
    assert!(wakes >= 9, "{wakes} wakes in 1 ms");
    assert_eq!(r.pulses(20), wakes);
}

#[test]
fn level_timer_holds_its_pin_until_isr_written() {
    let mut r = rig();
    r.w64(
        tcnf(2),
        22 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE_LEVEL | TCNF_TYPE_PERIODIC,
    );
    r.w32(tcmp(2), 100);
    r.w32(CONFIG, 1);
    r.run_to(ns(100));
    assert!(r.pins[22].is_high());
    assert_eq!(r.r64(ISR), 1 << 2);
    // Later periods while the status is set add nothing.
    r.run_to(ns(500));
    assert_eq!(r.pins[22].history(), vec![true]);
    // Writing 0s or other timers' bits does not clear it; 1 does.
    r.w64(ISR, 0xfb);
    assert_eq!(r.r64(ISR), 1 << 2);
    r.w32(ISR + 4, 4);
    assert_eq!(r.r64(ISR), 1 << 2);
    r.w32(ISR, 1 << 2);
    assert_eq!(r.r64(ISR), 0);
    assert!(!r.pins[22].is_high());
    // The next wake: periods shorter than the floor are coalesced.
    r.run_to(ns(100) + MIN_PERIODIC_WAKE_NS + ns(100));
    assert!(r.pins[22].is_high());
    // Reconfiguring to edge drops the held level.
    r.w64(tcnf(2), 22 << 9 | TCNF_INT_ENB | TCNF_TYPE_PERIODIC);
    assert!(!r.pins[22].is_high());
    assert_eq!(r.r64(ISR), 0);
}

#[test]
fn routing_is_limited_to_the_advertised_pins() {
    let mut r = rig();
    for pin in [0u64, 2, 9, 19] {
        r.w64(tcnf(3), pin << 9 | TCNF_INT_ENB);
        assert_eq!(r.r64(tcnf(3)) & TCNF_INT_ROUTE, 0, "pin {pin}");
    }
    r.w32(tcmp(3), 10);
    r.w32(CONFIG, 1);
    r.run_to(ns(20));
    assert!(r.pins.iter().all(|p| p.history().is_empty()));
    r.w64(tcnf(3), 23 << 9 | TCNF_INT_ENB);
    assert_eq!(r.r64(tcnf(3)) & TCNF_INT_ROUTE, 23 << 9);
    // The read-only capability bits survive any write.
    r.w64(tcnf(3), !0);
    let v = r.r64(tcnf(3));
    assert_eq!(v >> 32, 0x00f0_0000);
    assert_ne!(v & TCAP_PER_INT, 0);
    assert_eq!(v & (1 << 8 | 1 << 5), 0, "no 32-bit mode or 64-bit size");
}

#[test]
fn fsb_timer_sends_msi() {
    let mut r = rig();
    r.w32(tcnf(4) + TIMER_FSB_VAL, 0x41);
    r.w32(tcnf(4) + TIMER_FSB_VAL + 4, 0xfee0_0000);
    assert_eq!(r.r64(tcnf(4) + TIMER_FSB_VAL), 0xfee0_0000_0000_0041);
    r.w64(tcnf(4), TCNF_INT_ENB | TCNF_FSB_EN | 20 << 9);
    r.w32(tcmp(4), 50);
    r.w32(CONFIG, 1);
    r.run_to(ns(50));
    assert_eq!(*r.msi.0.lock().unwrap(), vec![(0xfee0_0000, 0x41)]);
    assert!(r.pins[20].history().is_empty());
}

#[test]
fn stopping_with_a_passed_deadline_still_interrupts() {
    let mut r = rig();
    r.w64(tcnf(0), 20 << 9 | TCNF_INT_ENB);
    r.w32(tcmp(0), 100);
    r.w32(CONFIG, 1);
    // The timer thread has not run yet when the guest stops the counter.
    r.clock.set(ns(150));
    r.w32(CONFIG, 0);
    assert_eq!(r.pulses(20), 1);
    assert_eq!(r.hpet.next_deadline(), None);
    assert_eq!(r.r32(MAIN_COUNTER), 150);
}

#[test]
fn comparator_writes_rearm_a_running_timer() {
    let mut r = rig();
    r.w64(tcnf(5), 20 << 9 | TCNF_INT_ENB);
    r.w32(CONFIG, 1);
    r.clock.set(ns(1000));
    r.w32(tcmp(5), 1500);
    assert_eq!(r.hpet.next_deadline(), Some(ns(1500)));
    r.run_to(ns(1500));
    assert_eq!(r.pulses(20), 1);
}

#[test]
fn malformed_accesses_are_ignored() {
    let mut r = rig();
    let before = r.r64(tcnf(0));
    for size in [0usize, 1, 2, 3, 5, 16] {
        let w = vec![0xffu8; size];
        r.hpet.write(HPET_BASE, CONFIG, &w);
        r.hpet.write(HPET_BASE, tcnf(0), &w);
        let mut b = vec![0xaau8; size];
        r.hpet.read(HPET_BASE, CAPABILITIES, &mut b);
        assert!(b.iter().all(|&x| x == 0), "size {size}");
    }
    // Misaligned and out-of-range.
    r.hpet.write(HPET_BASE, CONFIG + 2, &[0xff; 4]);
    r.hpet.write(HPET_BASE, CONFIG + 4, &[0xff; 8]);
    r.hpet.write(HPET_BASE, HPET_LEN, &[0xff; 4]);
    r.hpet.write(HPET_BASE, u64::MAX - 3, &[0xff; 4]);
    let mut b = [0xaau8; 4];
    r.hpet.read(HPET_BASE, u64::MAX - 3, &mut b);
    assert_eq!(b, [0; 4]);
    assert_eq!(r.r64(CONFIG), 0);
    assert_eq!(r.r64(tcnf(0)), before);
}
