//! The worker threads of a virtio device, across its activations.
//!
//! Each activation gets a fresh stop event its workers wait on beside
//! their kicks. A reset (under the transport's lock) only signals it: a
//! worker may be waiting for that very lock to signal an interrupt, so
//! nothing here ever waits for a worker except [`Drop`], which joins them
//! all — except the current thread, since a worker that briefly holds
//! the PCI function may be the one dropping its last reference.

use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

#[derive(Default)]
pub struct Workers {
    stop: Option<Arc<EventFd>>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new activation: stops the previous one's workers and
    /// returns the stop event for the new ones.
    pub fn begin(&mut self) -> Result<Arc<EventFd>, String> {
        self.stop();
        self.handles.retain(|h| !h.is_finished());
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
        self.stop = Some(stop.clone());
        Ok(stop)
    }

    /// Runs `f` on a new thread named `name`, as a worker of the current
    /// activation.
    pub fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| format!("{name}: {e}"))?;
        self.handles.push(h);
        Ok(())
    }

    /// Whether every worker ever spawned has exited (tests).
    pub fn all_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Tells the current activation's workers to exit; never waits.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.write(1);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
        let me = std::thread::current().id();
        for h in self.handles.drain(..) {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::wait_readable;

    #[test]
    fn stop_and_join() {
        let mut w = Workers::new();
        for _ in 0..3 {
            let stop = w.begin().unwrap();
            w.spawn("t", move || {
                wait_readable(&[&stop]);
            })
            .unwrap();
        }
        // Earlier activations were told to stop by `begin`; dropping
        // stops the last and joins all three.
        drop(w);
    }
}
