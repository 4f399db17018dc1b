//! Time for timer devices: an injectable clock, and a host thread that
//! runs a device's expired deadlines.
//!
//! A timer device (HPET, PM timer) reads time only through a [`Clock`] so
//! unit tests can drive it with a [`ManualClock`]. A device with
//! deadlines implements [`Timed`]; a [`TimerThread`] sleeps until the
//! earliest one and calls [`Timed::expire`], so interrupts fire on time
//! without any vCPU thread waiting. Devices call [`TimerWake::wake`] after
//! a guest access that changed their deadlines.
//!
//! Lock order: the device's mutex, then the wake mutex. The thread never
//! holds the device while sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const NS_PER_SEC: u64 = 1_000_000_000;

/// A monotonic clock in nanoseconds from an arbitrary origin.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// The host's monotonic clock, counted from this value's creation.
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Default)]
pub struct ManualClock {
    ns: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn set(&self, ns: u64) {
        self.ns.store(ns, Ordering::SeqCst);
    }
    pub fn advance(&self, ns: u64) {
        self.ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::SeqCst)
    }
}

/// `ticks` periods of a `hz` counter, in nanoseconds, rounded up so that
/// the counter has surely advanced by `ticks` at that time.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    let ns = (u128::from(ticks) * u128::from(NS_PER_SEC)).div_ceil(u128::from(hz));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Whole periods of a `hz` counter in `ns` nanoseconds.
pub fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    let t = u128::from(ns) * u128::from(hz) / u128::from(NS_PER_SEC);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// A device with deadlines on some [`Clock`].
pub trait Timed: Send {
    /// The earliest pending deadline, in the device clock's nanoseconds.
    fn next_deadline(&self) -> Option<u64>;
    /// Runs every deadline that has passed.
    fn expire(&mut self);
}

/// Tells a [`TimerThread`] that its device's deadlines changed.
#[derive(Default)]
pub struct TimerWake {
    state: Mutex<WakeState>,
    cond: Condvar,
}

#[derive(Default)]
struct WakeState {
    changed: bool,
    stop: bool,
}

impl TimerWake {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn wake(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).changed = true;
        self.cond.notify_all();
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.cond.notify_all();
    }
}

/// The host thread that runs one device's deadlines; stopped on drop.
pub struct TimerThread {
    wake: Arc<TimerWake>,
    thread: Option<JoinHandle<()>>,
}

impl TimerThread {
    /// Starts a thread named `name` driving `dev`, whose clock is `clock`
    /// and which calls `wake` when its deadlines change.
    pub fn spawn<T: Timed + 'static>(
        name: &str,
        dev: Arc<Mutex<T>>,
        clock: Arc<dyn Clock>,
        wake: Arc<TimerWake>,
    ) -> std::io::Result<Self> {
        let w = wake.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&*dev, &*clock, &w))?;
        Ok(Self {
            wake,
            thread: Some(thread),
        })
    }
}

fn run<T: Timed>(dev: &Mutex<T>, clock: &dyn Clock, wake: &TimerWake) {
    loop {
        let next = {
            let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
            d.expire();
            d.next_deadline()
        };
        let mut st = wake.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.stop {
            return;
        }
        if !st.changed {
            st = match next {
                None => wake.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(when) => {
                    let now = clock.now_ns();
                    if when <= now {
                        continue;
                    }
                    let timeout = Duration::from_nanos(when - now);
                    wake.cond
                        .wait_timeout(st, timeout)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        if st.stop {
            return;
        }
        st.changed = false;
    }
}

impl Drop for TimerThread {
    fn drop(&mut self) {
        self.wake.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_as_documented() {
        assert_eq!(ticks_to_ns(1, 1_000), 1_000_000);
        assert_eq!(ticks_to_ns(1, 3), 333_333_334);
        assert_eq!(ns_to_ticks(333_333_333, 3), 0);
        assert_eq!(ns_to_ticks(333_333_334, 3), 1);
        assert_eq!(ns_to_ticks(NS_PER_SEC, 16_777_216), 16_777_216);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
    }

    /// Fires at each deadline of a list, recording when.
    struct List {
        clock: Arc<dyn Clock>,
        deadlines: Vec<u64>,
        fired: Arc<Mutex<Vec<u64>>>,
    }

    impl Timed for List {
        fn next_deadline(&self) -> Option<u64> {
            self.deadlines.first().copied()
        }
        fn expire(&mut self) {
            let now = self.clock.now_ns();
            while self.deadlines.first().is_some_and(|&d| d <= now) {
                self.deadlines.remove(0);
                self.fired.lock().unwrap().push(now);
            }
        }
    }

    #[test]
    fn thread_runs_deadlines_on_time_and_wakes_for_new_ones() {
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
        let fired = Arc::new(Mutex::new(Vec::new()));
        let dev = Arc::new(Mutex::new(List {
            clock: clock.clone(),
            deadlines: vec![20_000_000, 40_000_000],
            fired: fired.clone(),
        }));
        let wake = TimerWake::new();
        let t = TimerThread::spawn("t", dev.clone(), clock.clone(), wake.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        {
            let f = fired.lock().unwrap();
            assert_eq!(f.len(), 2);
            assert!(f[0] >= 20_000_000 && f[1] >= 40_000_000, "{f:?}");
        }
        // Idle now (no deadline): a new one needs the wake-up.
        let at = clock.now_ns() + 10_000_000;
        dev.lock().unwrap().deadlines.push(at);
        wake.wake();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(fired.lock().unwrap().len(), 3);
        assert!(fired.lock().unwrap()[2] >= at);
        let t0 = Instant::now();
        drop(t);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
