//! The guest-facing side of a character device, as host backends see it.
//!
//! A frontend (the 16550 uart today, a virtio console later) buffers guest
//! output and accepts host input without ever blocking the vCPU thread.
//! A backend moves bytes between it and a host file descriptor on its own
//! thread. Flow control is in both directions: `take_output` empties the
//! frontend's bounded output buffer (the guest sees a busy transmitter while
//! it is full), and `give_input` accepts only what fits (the backend keeps the
//! rest and retries after the notifier fires).

use std::sync::Arc;

/// Wakes a backend. Called by the frontend with its own lock held, possibly
/// on a vCPU thread: it must be quick, must not block and must not call back
/// into the frontend (writing to an eventfd is the intended use).
pub type Notifier = Arc<dyn Fn() + Send + Sync>;

/// A character device's guest side.
pub trait CharFrontend: Send + Sync {
    /// Moves up to `buf.len()` bytes of pending guest output into `buf`;
    /// returns how many. Never blocks.
    fn take_output(&self, buf: &mut [u8]) -> usize;

    /// Offers host input; returns how many leading bytes of `data` were
    /// consumed (possibly 0 when the guest's receive buffer is full). Never
    /// blocks. Consumed is not always delivered: a device may discard input
    /// where hardware would (a uart in loopback mode).
    fn give_input(&self, data: &[u8]) -> usize;

    /// Installs (`Some`) or removes (`None`) the backend's notifier. While
    /// one is installed the frontend calls it when output becomes available
    /// and when room for input appears after `give_input` fell short. While
    /// none is installed the device behaves as if nothing were connected
    /// (a uart drops guest output, as bhyve does without a backend).
    fn set_notifier(&self, notifier: Option<Notifier>);
}
