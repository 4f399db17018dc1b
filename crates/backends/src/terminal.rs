//! Raw mode for the controlling terminal, restored on every way out.
//!
//! The saved settings live in statics guarded by an atomic state machine,
//! so [`restore_terminal`] takes no lock and calls only `tcsetattr` (which
//! is async-signal-safe): it may run from a signal handler or thread, a
//! panic hook, `atexit`, or a guard's `Drop`, any number of times.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::Once;

use crate::sys;

const IDLE: u8 = 0; // nothing saved
const BUSY: u8 = 1; // being saved or restored
const SAVED: u8 = 2; // terminal is raw, SAVED_TERMIOS holds the original

static STATE: AtomicU8 = AtomicU8::new(IDLE);
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);

struct SavedTermios(UnsafeCell<MaybeUninit<libc::termios>>);
// SAFETY: written only by the thread that moved STATE IDLE→BUSY and read
// only by the one that moved it SAVED→BUSY; the atomics order the accesses.
unsafe impl Sync for SavedTermios {}
static SAVED_TERMIOS: SavedTermios = SavedTermios(UnsafeCell::new(MaybeUninit::uninit()));

/// Restores the terminal that [`set_raw_mode`] changed, if any. Idempotent,
/// lock-free and async-signal-safe.
pub fn restore_terminal() {
    if STATE
        .compare_exchange(SAVED, BUSY, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let fd = SAVED_FD.load(Ordering::Relaxed);
    // SAFETY: STATE was SAVED, so the termios was fully written (Acquire),
    // and BUSY keeps everyone else away from it.
    let t = unsafe { (*SAVED_TERMIOS.0.get()).assume_init_ref() };
    let _ = sys::tcsetattr(fd, t);
    STATE.store(IDLE, Ordering::Release);
}

extern "C" fn restore_at_exit() {
    restore_terminal();
}

/// Keeps the terminal raw; restores it when dropped.
#[must_use = "the terminal is restored when the guard is dropped"]
pub struct TerminalGuard(());

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Puts the terminal on `fd` in raw mode as bhyve does (cfmakeraw + CLOCAL)
/// and registers the restore with `atexit`, so `std::process::exit` also
/// restores it. Returns `None` when `fd` is not a terminal. Only one terminal
/// can be raw at a time.
pub fn set_raw_mode(fd: RawFd) -> io::Result<Option<TerminalGuard>> {
    if !sys::isatty(fd) {
        return Ok(None);
    }
    let orig = sys::tcgetattr(fd)?;
    if STATE
        .compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a terminal is already in raw mode",
        ));
    }
    // SAFETY: BUSY gives this thread exclusive access.
    unsafe { (*SAVED_TERMIOS.0.get()).write(orig) };
    SAVED_FD.store(fd, Ordering::Relaxed);
    STATE.store(SAVED, Ordering::Release);
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(restore_at_exit) };
    });
    if let Err(e) = sys::tcsetattr(fd, &sys::make_raw(&orig)) {
        restore_terminal();
        return Err(e);
    }
    Ok(Some(TerminalGuard(())))
}

/// Chains a panic hook that restores the terminal before the previous hook
/// prints, so the message is readable and the shell usable afterwards.
pub fn restore_terminal_on_panic() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        prev(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpty::Pty;

    #[test]
    fn raw_then_restored() {
        let pty = Pty::open();
        let before = sys::tcgetattr(pty.slave()).unwrap();
        assert_ne!(before.c_lflag & libc::ICANON, 0, "a fresh pty is cooked");

        let guard = set_raw_mode(pty.slave()).unwrap().expect("a pty is a tty");
        let raw = sys::tcgetattr(pty.slave()).unwrap();
        assert_eq!(raw.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        assert_ne!(raw.c_cflag & libc::CLOCAL, 0);
        assert!(
            set_raw_mode(pty.slave()).is_err(),
            "one raw terminal at a time"
        );

        restore_terminal();
        let after = sys::tcgetattr(pty.slave()).unwrap();
        assert_eq!(after.c_lflag, before.c_lflag);
        assert_eq!(after.c_iflag, before.c_iflag);
        assert_eq!(after.c_oflag, before.c_oflag);
        assert_eq!(after.c_cflag, before.c_cflag);

        // Idempotent: the guard's drop and a second call change nothing,
        // even after someone else changed the terminal.
        let mut other = after;
        other.c_lflag &= !libc::ECHO;
        sys::tcsetattr(pty.slave(), &other).unwrap();
        restore_terminal();
        drop(guard);
        assert_eq!(sys::tcgetattr(pty.slave()).unwrap().c_lflag, other.c_lflag);

        // A pipe is not a terminal: nothing to do.
        let mut p = [0; 2];
        // SAFETY: p has room for two fds.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        assert!(set_raw_mode(p[0]).unwrap().is_none());
        // SAFETY: closing the fds pipe() returned.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }
}
