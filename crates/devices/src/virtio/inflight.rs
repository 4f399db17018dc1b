//! Requests of an asynchronous device (virtio-blk, virtio-scsi) that the
//! backend still holds, counted over every activation of the device.
//!
//! The count bounds what a guest can queue ([`super::pop_bounded`]) and
//! lets a reset wait until the backend is done with the device's
//! requests: a read still running after the reset would write into
//! memory the driver took back, a write would reach the disk after the
//! driver's newer ones (QEMU drains on reset, bhyve's blockif_cancel
//! waits for busy requests).
//!
//! Lock order. A reset waits here on a vCPU thread holding the PCI
//! function's lock, after the queues were stopped (their locks are free
//! again). A completion takes, in turn and never nested: the queue lock
//! (to write its answer), then this counter's lock (a leaf: nothing is
//! taken under it), and only after that may it reach for the function's
//! lock to signal, which it gives up once the activation is stopped
//! (`pci::PciIrq`). So the count always reaches zero while a reset
//! waits; the wait is bounded anyway, since a backend stuck on a dead
//! host (NFS) must not wedge the VM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a reset waits for the backend before it goes on.
pub const RESET_DRAIN_BOUND: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

impl InFlight {
    pub fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// One more request taken from the guest.
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// One request fully answered (nothing more of it touches guest
    /// memory); returns the count before. Every [`add`](Self::add) is
    /// matched by exactly one call.
    pub fn done(&self) -> usize {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        if before == 1 {
            // Taken after the decrement: a waiter that saw a non-zero
            // count under the lock is already waiting when we notify.
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.idle.notify_all();
        }
        before
    }

    /// Waits until no request is left or `timeout` passed; whether none
    /// is left.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.get() > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = match self.idle.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// A reset's wait for the backend: at most `bound`, then one warning
    /// naming `device`.
    pub fn drain(&self, device: &str, bound: Duration) {
        if !self.wait_idle(bound) {
            log::warn!(
                "{device}: reset: {} request(s) still held by the backend after {:?}; \
                 going on without them",
                self.get(),
                bound
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_idle_returns_when_the_last_request_is_done() {
        let f = Arc::new(InFlight::default());
        assert!(f.wait_idle(Duration::ZERO), "nothing in flight");
        f.add();
        f.add();
        let f2 = f.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(f2.done(), 2);
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(f2.done(), 1);
        });
        let start = Instant::now();
        assert!(f.wait_idle(Duration::from_secs(5)));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(f.get(), 0);
        t.join().unwrap();
    }

    #[test]
    fn wait_idle_is_bounded() {
        let f = InFlight::default();
        f.add();
        let start = Instant::now();
        assert!(!f.wait_idle(Duration::from_millis(100)));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(5));
        f.drain("test", Duration::from_millis(10));
        assert_eq!(f.get(), 1);
    }
}
