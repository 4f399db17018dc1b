//! virtio-console (bhyve's `pci_virtio_console.c`) with MULTIPORT: up to
//! 16 named ports, each a UNIX-domain stream socket bhyve creates and
//! listens on, serving one client at a time.
//!
//! Queues (as every virtio-console with MULTIPORT): 0/1 receive/transmit
//! of port 0, 2/3 the control receive/transmit queues, then 4+2(p-1) and
//! 5+2(p-1) for port p. bhyve always offers all 34.
//!
//! Control protocol (host side of virtio 1.x §5.3.6.2), as bhyve: on
//! DEVICE_READY every configured port is announced (DEVICE_ADD then
//! PORT_NAME) and those with a client get PORT_OPEN; a client connecting
//! later sends PORT_OPEN at once. bhyve has no console port, so
//! CONSOLE_PORT is never sent. Unlike bhyve, a client leaving sends
//! PORT_OPEN 0 (so guest readers see end-of-file).
//!
//! Data: socket bytes go to the guest only as it posts receive buffers
//! (the socket is not read otherwise: the kernel's buffer is the only
//! one); guest bytes go to the client as fast as it reads them (a
//! transmit buffer is completed when written; the ring is the backlog),
//! and are dropped when no client is connected, as bhyve.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::chain_io::{poll_fds, pop_or_arm, read_segments, segments, write_segments};
use super::log_limit::LogLimit;
use super::{drain_queue, types, Activation, ActiveQueues, VirtioDevice};
use crate::virtio::worker::Workers;

/// bhyve's VTCON_MAXPORTS.
pub const MAX_PORTS: usize = 16;
const NUM_QUEUES: usize = 2 + 2 * MAX_PORTS;
/// bhyve's ring size.
const QUEUE_SIZE: u16 = 64;
const QUEUE_SIZES: [u16; NUM_QUEUES] = [QUEUE_SIZE; NUM_QUEUES];
const CTRL_RX: usize = 2;
const CTRL_TX: usize = 3;

/// What bhyve really offers (its VTCON_S_HOSTCAPS ORs bit numbers, so
/// EMERG_WRITE is not among them).
pub const F_SIZE: u64 = 1 << 0;
pub const F_MULTIPORT: u64 = 1 << 1;

/// Control events (virtio 1.x §5.3.6.2).
pub mod event {
    pub const DEVICE_READY: u16 = 0;
    pub const DEVICE_ADD: u16 = 1;
    pub const DEVICE_REMOVE: u16 = 2;
    pub const PORT_READY: u16 = 3;
    pub const CONSOLE_PORT: u16 = 4;
    pub const RESIZE: u16 = 5;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

/// PCI class "other communications controller". bhyve uses 07/00
/// (a 16550-compatible serial port), which Linux's 8250_pci claims by
/// class; QEMU's 07/80 avoids that.
const CLASS_COMM_OTHER: (u8, u8, u8) = (0x07, 0x80, 0x00);

/// Bytes moved between guest memory and a socket per system call.
const BOUNCE: usize = 64 << 10;
/// Control messages waiting for guest buffers; announcing 16 ports takes
/// 48, so more means a guest that never posts buffers.
const MAX_PENDING_CONTROL: usize = 256;
/// Chains served per queue per round, so one busy port cannot starve the
/// others.
const ROUND: usize = 64;
/// A port name longer than this is cut (Linux reads names into a page).
const MAX_NAME: usize = 255;

/// One configured port: its id (`port.N`), name and socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub id: usize,
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("vtcon: Invalid port {0}")]
    InvalidPort(usize),
    #[error("vtcon: port {0} configured twice")]
    Duplicate(usize),
    #[error("cannot create port {name}: {path}: {source}")]
    Socket {
        name: String,
        path: String,
        source: std::io::Error,
    },
}

/// A port's socket side, which outlives activations.
struct PortSocket {
    name: String,
    path: PathBuf,
    listener: UnixListener,
    client: Option<UnixStream>,
}

impl Drop for PortSocket {
    fn drop(&mut self) {
        // A device dropped in-process (a failed start, tests) removes its
        // sockets; at exit they stay behind, as bhyve(8) documents.
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct VirtioConsole {
    /// Indexed by port id. A worker holds the lock for its whole
    /// activation; the next one waits for it to finish.
    ports: Arc<Mutex<Vec<Option<PortSocket>>>>,
    config: [u8; 12],
    workers: Workers,
}

impl VirtioConsole {
    /// Creates and listens on every port's socket (an existing file at a
    /// path is an error, as bhyve's bind).
    pub fn new(specs: &[PortSpec]) -> Result<Self, ConsoleError> {
        let mut ports: Vec<Option<PortSocket>> = (0..MAX_PORTS).map(|_| None).collect();
        for s in specs {
            let slot = ports.get_mut(s.id).ok_or(ConsoleError::InvalidPort(s.id))?;
            if slot.is_some() {
                return Err(ConsoleError::Duplicate(s.id));
            }
            let err = |source| ConsoleError::Socket {
                name: s.name.clone(),
                path: s.path.display().to_string(),
                source,
            };
            let listener = UnixListener::bind(&s.path).map_err(err)?;
            // From here on the file is ours to remove.
            let mut name = s.name.clone();
            if name.len() > MAX_NAME {
                let mut cut = MAX_NAME;
                while !name.is_char_boundary(cut) {
                    cut -= 1;
                }
                name.truncate(cut);
            }
            let sock = PortSocket {
                name,
                path: s.path.clone(),
                listener,
                client: None,
            };
            sock.listener.set_nonblocking(true).map_err(err)?;
            *slot = Some(sock);
        }
        let mut config = [0u8; 12];
        config[0..2].copy_from_slice(&80u16.to_le_bytes());
        config[2..4].copy_from_slice(&25u16.to_le_bytes());
        config[4..8].copy_from_slice(&(MAX_PORTS as u32).to_le_bytes());
        Ok(VirtioConsole {
            ports: Arc::new(Mutex::new(ports)),
            config,
            workers: Workers::new(),
        })
    }
}

fn rx_queue(port: usize) -> usize {
    if port == 0 {
        0
    } else {
        2 * (port + 1)
    }
}

/// The port whose queue `q` is, and whether it is its receive queue.
fn queue_port(q: usize) -> Option<(usize, bool)> {
    match q {
        0 | 1 => Some((0, q == 0)),
        CTRL_RX | CTRL_TX => None,
        _ => Some((q / 2 - 1, q.is_multiple_of(2))),
    }
}

fn control(id: u32, ev: u16, value: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + payload.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&ev.to_le_bytes());
    m.extend_from_slice(&value.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// A transmit chain being written to the client.
struct TxChain {
    head: u16,
    segs: Vec<(GuestAddress, u32)>,
    /// Position: segment and offset in it.
    seg: usize,
    off: u32,
}

enum Sent {
    /// The chain is finished (written, dropped or unreadable).
    Done,
    /// The client's socket is full.
    Blocked,
}

/// Per-port state of one activation.
#[derive(Default)]
struct PortRun {
    tx: Option<TxChain>,
    /// The receive queue had no buffer the last time we looked; cleared
    /// by its kick.
    starved: bool,
}

struct Worker {
    mem: GuestMemoryMmap,
    aq: Arc<ActiveQueues>,
    multiport: bool,
    ready: bool,
    pending: VecDeque<Vec<u8>>,
    run: Vec<PortRun>,
    bounce: Vec<u8>,
    /// A queue still had chains when its batch ended: go round again
    /// without waiting (no kick comes for them).
    more: bool,
    /// Warnings the driver can trigger in a loop.
    dropped_events: LogLimit,
    driver_events: LogLimit,
}

impl Worker {
    fn send_control(&mut self, msg: Vec<u8>) {
        if !self.multiport {
            return;
        }
        if self.pending.len() >= MAX_PENDING_CONTROL {
            self.dropped_events.warn(format_args!(
                "virtio-console: guest posts no control buffers, dropping an event"
            ));
            return;
        }
        self.pending.push_back(msg);
    }

    /// A client came or went: tell a ready driver.
    fn port_open(&mut self, id: usize, open: bool) {
        if self.ready {
            self.send_control(control(id as u32, event::PORT_OPEN, open.into(), &[]));
        }
    }

    fn close_client(&mut self, ports: &mut [Option<PortSocket>], id: usize) {
        if let Some(p) = ports.get_mut(id).and_then(|p| p.as_mut()) {
            if p.client.take().is_some() {
                log::debug!("virtio-console: port {} client left", p.name);
                self.port_open(id, false);
            }
        }
    }

    /// Handles a batch of the driver's control messages (queue 3).
    fn control_in(&mut self, ports: &[Option<PortSocket>]) {
        let mut msgs = Vec::new();
        let d = {
            let Some(mut q) = self.aq.lock(CTRL_TX) else {
                return;
            };
            drain_queue(&mut q, &self.mem, |chain| {
                let mut b = [0u8; 8];
                if read_segments(&self.mem, &segments(chain, false), &mut b) == 8 {
                    msgs.push(b);
                }
                0
            })
        };
        self.more |= d.more;
        if d.notify {
            self.aq.signal_used(CTRL_TX as u16);
        }
        for m in msgs {
            let id = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            let ev = u16::from_le_bytes([m[4], m[5]]);
            let value = u16::from_le_bytes([m[6], m[7]]);
            match ev {
                event::DEVICE_READY if value == 1 => {
                    self.ready = true;
                    for (i, p) in ports.iter().enumerate() {
                        let Some(p) = p else { continue };
                        let i = i as u32;
                        self.send_control(control(i, event::DEVICE_ADD, 1, &[]));
                        self.send_control(control(i, event::PORT_NAME, 1, p.name.as_bytes()));
                        if p.client.is_some() {
                            self.send_control(control(i, event::PORT_OPEN, 1, &[]));
                        }
                    }
                }
                event::DEVICE_READY => self
                    .driver_events
                    .warn(format_args!("virtio-console: the driver failed to start")),
                event::PORT_READY => {
                    let known = ports.get(id as usize).is_some_and(|p| p.is_some());
                    if !known {
                        self.driver_events.warn(format_args!(
                            "virtio-console: PORT_READY event for unknown port {id}"
                        ));
                    } else if value != 1 {
                        self.driver_events.warn(format_args!(
                            "virtio-console: the driver failed to add port {id}"
                        ));
                    }
                }
                event::PORT_OPEN => {
                    log::debug!(
                        "virtio-console: guest {} port {id}",
                        ["closed", "opened"][usize::from(value == 1)]
                    );
                }
                _ => log::debug!("virtio-console: control event {ev} ignored"),
            }
        }
    }

    /// Copies pending control messages into the driver's buffers (queue 2).
    fn control_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let notify = {
            let Some(mut q) = self.aq.lock(CTRL_RX) else {
                return;
            };
            let mut used = false;
            while let Some(msg) = self.pending.front() {
                let Some(chain) = pop_or_arm(&mut q, &self.mem) else {
                    break;
                };
                let head = chain.head_index();
                let n = write_segments(&self.mem, &segments(chain, true), msg);
                self.pending.pop_front();
                if q.add_used(&self.mem, head, n as u32).is_err() {
                    break;
                }
                used = true;
            }
            used && q.needs_notification(&self.mem).unwrap_or(true)
        };
        if notify {
            self.aq.signal_used(CTRL_RX as u16);
        }
    }

    /// Moves socket bytes into port `id`'s receive buffers while both
    /// exist.
    fn port_rx(&mut self, ports: &mut [Option<PortSocket>], id: usize) {
        let qi = rx_queue(id);
        let mut hangup = false;
        let notify = {
            let Some(client) = ports[id].as_ref().and_then(|p| p.client.as_ref()) else {
                return;
            };
            if self.run[id].starved {
                return;
            }
            let Some(mut q) = self.aq.lock(qi) else {
                // A queue the driver never enabled: do not poll the client
                // for data that cannot go anywhere.
                self.run[id].starved = true;
                return;
            };
            let mut used = false;
            for _ in 0..ROUND {
                let Some(chain) = pop_or_arm(&mut q, &self.mem) else {
                    self.run[id].starved = true;
                    break;
                };
                let head = chain.head_index();
                let segs = segments(chain, true);
                let room = (super::chain_io::segments_len(&segs) as usize).min(BOUNCE);
                // A non-blocking read of a local socket: cheap enough to do
                // under the queue lock, and it spares giving the chain back
                // after releasing it.
                let n = match recv(client, &mut self.bounce[..room]) {
                    Ok(0) if room > 0 => {
                        hangup = true;
                        None
                    }
                    Ok(n) => Some(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                    Err(_) => {
                        hangup = true;
                        None
                    }
                };
                let Some(n) = n else {
                    q.go_to_previous_position();
                    break;
                };
                let done = write_segments(&self.mem, &segs, &self.bounce[..n]);
                if q.add_used(&self.mem, head, done as u32).is_err() {
                    break;
                }
                used = true;
            }
            used && q.needs_notification(&self.mem).unwrap_or(true)
        };
        if notify {
            self.aq.signal_used(qi as u16);
        }
        if hangup {
            self.close_client(ports, id);
        }
    }

    /// Writes guest transmit buffers of port `id` (queue `qi`) to its
    /// client, or drops them when it has none.
    fn port_tx(&mut self, ports: &mut [Option<PortSocket>], id: usize, qi: usize) {
        let mut used = false;
        for i in 0..ROUND {
            if i + 1 == ROUND {
                // The round may end with chains left: look again soon.
                self.more = true;
            }
            if self.run[id].tx.is_none() {
                let Some(mut q) = self.aq.lock(qi) else {
                    break;
                };
                let Some(chain) = pop_or_arm(&mut q, &self.mem) else {
                    break;
                };
                let head = chain.head_index();
                self.run[id].tx = Some(TxChain {
                    head,
                    segs: segments(chain, false),
                    seg: 0,
                    off: 0,
                });
            }
            let client = ports
                .get(id)
                .and_then(|p| p.as_ref())
                .and_then(|p| p.client.as_ref());
            let mut tx = self.run[id].tx.take().expect("set above");
            let (sent, lost) = send_chain(&self.mem, &mut tx, client, &mut self.bounce);
            if lost {
                self.close_client(ports, id);
            }
            if let Sent::Blocked = sent {
                self.run[id].tx = Some(tx);
                break;
            }
            let Some(mut q) = self.aq.lock(qi) else {
                break;
            };
            if q.add_used(&self.mem, tx.head, 0).is_err() {
                break;
            }
            used = true;
        }
        if used {
            let notify = match self.aq.lock(qi) {
                Some(mut q) => q.needs_notification(&self.mem).unwrap_or(true),
                None => false,
            };
            if notify {
                self.aq.signal_used(qi as u16);
            }
        }
    }

    /// Takes waiting clients; a second one is turned away, as bhyve.
    fn accept(&mut self, ports: &mut [Option<PortSocket>], id: usize) {
        let Some(p) = ports.get_mut(id).and_then(|p| p.as_mut()) else {
            return;
        };
        while let Ok((s, _)) = p.listener.accept() {
            if p.client.is_some() || s.set_nonblocking(true).is_err() {
                continue;
            }
            log::debug!("virtio-console: port {} client connected", p.name);
            p.client = Some(s);
            self.port_open(id, true);
        }
    }

    /// One round over every queue and socket.
    fn service(&mut self, ports: &mut [Option<PortSocket>]) {
        if self.multiport {
            self.control_in(ports);
        }
        let nports = if self.multiport { MAX_PORTS } else { 1 };
        for id in 0..nports {
            self.accept(ports, id);
            let tx = rx_queue(id) + 1;
            if ports[id].is_some() {
                self.port_tx(ports, id, tx);
                self.port_rx(ports, id);
            } else {
                // A queue of a port that does not exist: complete and drop.
                let d = match self.aq.lock(tx) {
                    Some(mut q) => drain_queue(&mut q, &self.mem, |_| 0),
                    None => continue,
                };
                self.more |= d.more;
                if d.notify {
                    self.aq.signal_used(tx as u16);
                }
            }
        }
        self.control_out();
    }
}

/// Writes what is left of `tx` to `client`; says how it ended and
/// whether the client is gone.
fn send_chain(
    mem: &GuestMemoryMmap,
    tx: &mut TxChain,
    client: Option<&UnixStream>,
    bounce: &mut [u8],
) -> (Sent, bool) {
    let Some(client) = client else {
        return (Sent::Done, false);
    };
    while let Some(&(addr, len)) = tx.segs.get(tx.seg) {
        let left = (len - tx.off) as usize;
        let n = left.min(bounce.len());
        let Some(at) = addr.0.checked_add(u64::from(tx.off)) else {
            return (Sent::Done, false);
        };
        if read_segments(mem, &[(GuestAddress(at), n as u32)], &mut bounce[..n]) != n {
            return (Sent::Done, false);
        }
        match send(client, &bounce[..n]) {
            Ok(w) => {
                tx.off += w as u32;
                if tx.off >= len {
                    tx.seg += 1;
                    tx.off = 0;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (Sent::Blocked, false),
            Err(_) => return (Sent::Done, true),
        }
    }
    (Sent::Done, false)
}

fn recv(s: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        let n = unsafe {
            libc::recv(
                s.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A non-blocking send that reports a gone peer as EPIPE, not SIGPIPE.
fn send(s: &UnixStream, buf: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn worker(act: Activation, ports: Arc<Mutex<Vec<Option<PortSocket>>>>, stop: Arc<EventFd>) {
    let mut ports = ports.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = Worker {
        mem: act.mem,
        aq: act.queues,
        multiport: act.features & F_MULTIPORT != 0,
        ready: false,
        pending: VecDeque::new(),
        run: (0..MAX_PORTS).map(|_| PortRun::default()).collect(),
        bounce: vec![0u8; BOUNCE],
        more: false,
        dropped_events: LogLimit::new("virtio-console"),
        driver_events: LogLimit::new("virtio-console"),
    };
    // Without MULTIPORT the driver only knows port 0, whose client is
    // then simply connected.
    let nq = if w.multiport { NUM_QUEUES } else { 2 };
    loop {
        if w.aq.is_stopped() {
            return;
        }
        w.more = false;
        w.service(&mut ports);
        let mut fds = vec![(stop.as_raw_fd(), libc::POLLIN)];
        for q in 0..nq {
            if let Some(k) = w.aq.kick(q) {
                fds.push((k.as_raw_fd(), libc::POLLIN));
            }
        }
        let nkicks = fds.len() - 1;
        // (fd index, port, is client)
        let mut socks = Vec::new();
        let nports = if w.multiport { MAX_PORTS } else { 1 };
        for (id, p) in ports.iter().enumerate().take(nports) {
            let Some(p) = p else { continue };
            socks.push((id, false));
            fds.push((p.listener.as_raw_fd(), libc::POLLIN));
            if let Some(c) = &p.client {
                let mut ev = 0;
                if !w.run[id].starved {
                    ev |= libc::POLLIN;
                }
                if w.run[id].tx.is_some() {
                    ev |= libc::POLLOUT;
                }
                socks.push((id, true));
                fds.push((c.as_raw_fd(), ev));
            }
        }
        let rev = poll_fds(&fds, if w.more { 0 } else { -1 });
        if rev[0] != 0 || w.aq.is_stopped() {
            return;
        }
        for q in 0..nkicks {
            if rev[1 + q] != 0 {
                if let Some(k) = w.aq.kick(q) {
                    let _ = k.read();
                }
                if let Some((id, true)) = queue_port(q) {
                    w.run[id].starved = false;
                }
            }
        }
        for (i, &(id, client)) in socks.iter().enumerate() {
            let r = rev[1 + nkicks + i];
            // A hang-up with no data left to read (or no room for it).
            if client && r & (libc::POLLHUP | libc::POLLERR) != 0 && r & libc::POLLIN == 0 {
                w.close_client(&mut ports, id);
            }
        }
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u16 {
        types::CONSOLE
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_COMM_OTHER
    }

    fn queue_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        F_SIZE | F_MULTIPORT
    }

    fn config_size(&self) -> usize {
        self.config.len()
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| self.config.get(usize::try_from(o).ok()?))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let (s, p) = (stop.clone(), self.ports.clone());
        self.workers
            .spawn("virtio-console", move || worker(act, p, s))?;
        Ok(())
    }

    fn reset(&mut self) {
        self.workers.stop();
    }
}

#[cfg(test)]
mod tests;
