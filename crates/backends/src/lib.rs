//! Host side of devices: character backends for the uarts (bhyve's
//! `uart_backend.c`): `stdio`, a host TTY path, and `tcp=ip:port` /
//! `tcp=[ipv6]:port`.
//!
//! Each backend runs its I/O on its own thread and talks to the device
//! through [`bhyve_devices::CharFrontend`], so a vCPU never blocks on host
//! I/O and no byte is lost to a slow side (see `pump`).
//!
//! How the vmm wires `-l com1,stdio` .. `com4` (bhyve's LPC):
//! ```text
//! for (i, spec) in com_specs {                 // com1..com4
//!     let (base, irq) = bhyve_devices::uart::COM_PORTS[i]; // 0x3f8/4 0x2f8/3 0x3e8/4 0x2e8/3
//!     let backend = bhyve_backends::open_char_backend(spec)?; // errors before the VM runs
//!     let uart = Arc::new(Mutex::new(Uart::new(isa_irq_line(irq))));
//!     pio_bus.insert(base, bhyve_devices::uart::UART_REG_COUNT, uart.clone())?;
//!     handles.push(backend.attach(uart)?);      // keep until the VM stops
//! }
//! bhyve_backends::restore_terminal_on_panic(); // and restore_terminal() on signals
//! ```
//! Dropping a [`BackendHandle`] flushes the guest's pending output (up to
//! two seconds), stops the thread and restores the terminal.

pub mod block;
pub mod net;
mod pump;
mod stdio;
mod sys;
mod tcp;
mod terminal;
mod tty;

#[cfg(test)]
mod testpty;
#[cfg(test)]
mod testutil;

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bhyve_devices::CharFrontend;

pub use terminal::{restore_terminal, restore_terminal_on_panic, set_raw_mode, TerminalGuard};

use pump::{Host, Pump};
use sys::EventFd;

/// Why a backend could not be set up; the message is fit for the user.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("{0}: not a terminal")]
    NotATty(String),
    #[error("invalid tcp backend '{spec}': {reason}")]
    BadAddress { spec: String, reason: String },
    #[error("tcp={addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("stdio is already in use by another device")]
    StdioInUse,
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// Builds the thread body for a test-only host.
#[cfg(test)]
type TestSpawner =
    Box<dyn FnOnce(Arc<dyn CharFrontend>, Arc<EventFd>, Arc<EventFd>) -> PumpBody + Send>;
type PumpBody = Box<dyn FnOnce() + Send>;

enum Kind {
    Stdio(stdio::StdioClaim),
    Tty(tty::TtyHost),
    Tcp(tcp::TcpHost),
    #[cfg(test)]
    Test(TestSpawner),
}

/// An opened backend (tty open, socket bound, stdio claimed) with no
/// thread yet: open everything first so configuration errors surface before
/// the VM starts, then [`attach`](CharBackend::attach).
pub struct CharBackend {
    kind: Kind,
}

/// Opens a backend from bhyve's syntax: `stdio`, `tcp=ip:port`,
/// `tcp=[ipv6]:port`, or a TTY path.
pub fn open_char_backend(spec: &str) -> Result<CharBackend, BackendError> {
    let kind = if spec == "stdio" {
        Kind::Stdio(stdio::StdioClaim::take()?)
    } else if let Some(rest) = spec.strip_prefix("tcp=") {
        Kind::Tcp(tcp::TcpHost::bind(tcp::parse_addr(spec, rest)?)?)
    } else if spec.starts_with("tcp") {
        return Err(BackendError::BadAddress {
            spec: spec.to_owned(),
            reason: "expected tcp=ip:port".into(),
        });
    } else {
        Kind::Tty(tty::TtyHost::open(spec)?)
    };
    Ok(CharBackend { kind })
}

/// `open_char_backend(spec)?.attach(front)`.
pub fn attach_char_backend(
    spec: &str,
    front: Arc<dyn CharFrontend>,
) -> Result<BackendHandle, BackendError> {
    open_char_backend(spec)?.attach(front)
}

fn spawn_pump<H: Host + 'static>(
    host: H,
    front: Arc<dyn CharFrontend>,
    wake: Arc<EventFd>,
    stop: Arc<EventFd>,
) -> PumpBody {
    Box::new(move || {
        Pump {
            front,
            host,
            wake,
            stop,
        }
        .run()
    })
}

impl CharBackend {
    #[cfg(test)]
    pub(crate) fn from_host<H: Host + 'static>(host: H) -> Self {
        CharBackend {
            kind: Kind::Test(Box::new(move |f, w, s| spawn_pump(host, f, w, s))),
        }
    }

    /// The bound address of a `tcp=` backend (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Tcp(t) => t.local_addr(),
            _ => None,
        }
    }

    /// Connects the backend to a device and starts its I/O thread.
    pub fn attach(self, front: Arc<dyn CharFrontend>) -> Result<BackendHandle, BackendError> {
        let io_err = |what| move |source| BackendError::Io { what, source };
        let wake = Arc::new(EventFd::new().map_err(io_err("eventfd"))?);
        let stop = Arc::new(EventFd::new().map_err(io_err("eventfd"))?);
        let local_addr = self.local_addr();
        let (name, body) = match self.kind {
            Kind::Stdio(claim) => (
                "stdio",
                spawn_pump(
                    stdio::StdioHost::new(claim)?,
                    front.clone(),
                    wake.clone(),
                    stop.clone(),
                ),
            ),
            Kind::Tty(h) => (
                "tty",
                spawn_pump(h, front.clone(), wake.clone(), stop.clone()),
            ),
            Kind::Tcp(h) => (
                "tcp",
                spawn_pump(h, front.clone(), wake.clone(), stop.clone()),
            ),
            #[cfg(test)]
            Kind::Test(f) => ("test", f(front.clone(), wake.clone(), stop.clone())),
        };
        let w = wake.clone();
        front.set_notifier(Some(Arc::new(move || w.signal())));
        let (done_tx, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("char-{name}"))
            .spawn(move || {
                body();
                let _ = done_tx.send(());
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(source) => {
                // Nobody will drain the device: let it drop output again.
                front.set_notifier(None);
                return Err(BackendError::Io {
                    what: "cannot start backend thread",
                    source,
                });
            }
        };
        Ok(BackendHandle {
            front,
            stop,
            thread: Some(thread),
            done,
            local_addr,
        })
    }
}

/// A running backend. Dropping it (or [`shutdown`](Self::shutdown)) flushes
/// pending guest output, stops the thread and detaches the device.
pub struct BackendHandle {
    front: Arc<dyn CharFrontend>,
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
    local_addr: Option<SocketAddr>,
}

/// Longer than the pump's own flush deadline: only a write stuck in the
/// kernel (a blocking stdout nobody reads) runs into it.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

impl BackendHandle {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn shutdown(self) {}
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        self.stop.signal();
        let Some(thread) = self.thread.take() else {
            return;
        };
        match self.done.recv_timeout(STOP_TIMEOUT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                log::warn!("char backend: I/O thread stuck in a write; leaving it behind");
            }
        }
        self.front.set_notifier(None);
    }
}
