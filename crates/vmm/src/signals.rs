//! Signals: kicking vCPU threads out of `KVM_RUN`, and turning the host's
//! termination signals into a clean stop.
//!
//! A kick is a real-time signal sent to one vCPU thread. Its handler only
//! sets `immediate_exit` in that thread's `kvm_run`, so a kick that lands
//! between the thread's last flag check and its next `KVM_RUN` still makes
//! that `KVM_RUN` return `EINTR` at once instead of being lost.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;

use kvm_bindings::kvm_run;
use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn kick_handler(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // Only async-signal-safe work: a thread-local read and a plain store
    // into this thread's own kvm_run mapping.
    let _ = KVM_RUN.try_with(|p| {
        let p = p.get();
        if !p.is_null() {
            // SAFETY: set by `set_thread_kvm_run` to this thread's kvm_run
            // mapping, which outlives the pointer (cleared before unmap).
            unsafe { std::ptr::addr_of_mut!((*p).immediate_exit).write_volatile(1) };
        }
    });
}

/// Installs the kick handler once per process.
pub fn install_kick_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        res = register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    res
}

/// Registers (or clears, with null) the calling thread's `kvm_run`.
pub fn set_thread_kvm_run(p: *mut kvm_run) {
    KVM_RUN.with(|c| c.set(p));
}

/// Sends the kick signal to a thread.
pub fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: callers only pass ids of threads that have not been joined.
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}

/// The host signals that stop bhyve cleanly.
pub const STOP_SIGNALS: [c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

fn stop_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the stop signals in the calling thread (and so in every thread it
/// creates afterwards); [`StopSignalWatcher`] then receives them.
pub fn block_stop_signals() {
    let set = stop_sigset();
    // SAFETY: valid sigset; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// A thread that waits for the stop signals and reports the first one.
pub struct StopSignalWatcher {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StopSignalWatcher {
    /// `on_signal` runs on the watcher thread for each stop signal.
    pub fn spawn(on_signal: impl Fn(c_int) + Send + 'static) -> std::io::Result<Self> {
        block_stop_signals();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let set = stop_sigset();
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                };
                while !d.load(Ordering::Acquire) {
                    // SAFETY: valid sigset and timespec; siginfo may be null.
                    let s = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
                    // A signal that arrives after `done` is the wake-up
                    // from Drop (or too late to matter): don't act on it.
                    if s > 0 && !d.load(Ordering::Acquire) {
                        on_signal(s);
                    }
                }
            })?;
        Ok(Self {
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for StopSignalWatcher {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // Wake the watcher at once instead of waiting out its timeout:
            // the stop signals are blocked everywhere, so a thread-directed
            // one stays pending for it and ends its sigtimedwait.
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: the thread has not been joined, so its id is valid.
            unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGTERM) };
            let _ = t.join();
        }
    }
}
