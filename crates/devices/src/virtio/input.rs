//! virtio-input (bhyve's `pci_virtio_input.c`): passes a host evdev
//! device (`/dev/input/eventX`) through.
//!
//! The configuration space answers the driver's selects (name, serial,
//! IDs, property and event bitmaps, axis ranges) from the evdev's
//! EVIOCG* ioctls. Events read from the device go to the event queue a
//! whole frame (up to SYN_REPORT) at a time; a frame the guest has no
//! buffers for is dropped, as a real device's would be. Events the
//! driver writes to the status queue (LEDs) are written to the device,
//! except EV_MSC (bhyve's rule: multi-touch devices echo it back, and
//! frames would grow forever).

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::chain_io::{poll_fds, read_segments, segments, write_segments};
use super::{drain_queue, types, Activation, ActiveQueues, VirtioDevice};
use crate::virtio::worker::Workers;

/// bhyve's ring size.
const QUEUE_SIZE: u16 = 64;
const EVENTQ: usize = 0;
const STATUSQ: usize = 1;
/// PCI class "other input controller" (bhyve's).
const CLASS_INPUT_OTHER: (u8, u8, u8) = (0x09, 0x80, 0x00);

/// Configuration selects (virtio 1.x §5.8.4).
pub mod select {
    pub const UNSET: u8 = 0x00;
    pub const ID_NAME: u8 = 0x01;
    pub const ID_SERIAL: u8 = 0x02;
    pub const ID_DEVIDS: u8 = 0x03;
    pub const PROP_BITS: u8 = 0x10;
    pub const EV_BITS: u8 = 0x11;
    pub const ABS_INFO: u8 = 0x12;
}

/// Event types and their code counts (linux/input-event-codes.h).
pub mod ev {
    pub const SYN: u16 = 0x00;
    pub const KEY: u16 = 0x01;
    pub const REL: u16 = 0x02;
    pub const ABS: u16 = 0x03;
    pub const MSC: u16 = 0x04;
    pub const SW: u16 = 0x05;
    pub const LED: u16 = 0x11;
    pub const SND: u16 = 0x12;
    pub const REP: u16 = 0x14;
    pub const FF: u16 = 0x15;
    pub const SYN_REPORT: u16 = 0;
    pub const ABS_CNT: usize = 0x40;
    pub const INPUT_PROP_CNT: usize = 0x20;
}

/// Codes of event type `ty`, for the types a virtio-input device
/// describes; `None` for the others.
fn code_count(ty: u8) -> Option<usize> {
    Some(match u16::from(ty) {
        ev::KEY => 0x300,
        ev::REL => 0x10,
        ev::ABS => ev::ABS_CNT,
        ev::MSC => 0x08,
        ev::SW => 0x11,
        ev::LED => 0x10,
        ev::SND => 0x08,
        ev::REP => 0x02,
        ev::FF => 0x80,
        _ => return None,
    })
}

/// Bytes of a bitmap of `bits` bits as the kernel stores it (longs).
fn bitmap_bytes(bits: usize) -> usize {
    bits.div_ceil(64) * 8
}

/// The configuration structure: select, subsel, size, 5 reserved bytes,
/// then a 128-byte union.
const CONFIG_SIZE: usize = 136;
const UNION: usize = 8;

/// One input event as virtio carries it (type, code, value; LE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub ty: u16,
    pub code: u16,
    pub value: u32,
}

impl InputEvent {
    fn to_virtio(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.ty.to_le_bytes());
        b[2..4].copy_from_slice(&self.code.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    fn from_virtio(b: [u8; 8]) -> Self {
        InputEvent {
            ty: u16::from_le_bytes([b[0], b[1]]),
            code: u16::from_le_bytes([b[2], b[3]]),
            value: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// An axis's range (struct input_absinfo without the current value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbsInfo {
    pub min: i32,
    pub max: i32,
    pub fuzz: i32,
    pub flat: i32,
    pub res: i32,
}

/// What the device needs of an evdev: its descriptions, and its events
/// (non-blocking). [`Evdev`] is the real one; tests use a fake.
pub trait EvdevSource: Send + Sync {
    /// Readable when events wait.
    fn poll_fd(&self) -> RawFd;
    fn name(&self) -> std::io::Result<Vec<u8>>;
    /// bustype, vendor, product, version.
    fn ids(&self) -> std::io::Result<[u16; 4]>;
    /// Fills `buf` with the property bitmap.
    fn prop_bits(&self, buf: &mut [u8]) -> std::io::Result<()>;
    /// Fills `buf` with the bitmap of codes of event type `ty`.
    fn event_bits(&self, ty: u8, buf: &mut [u8]) -> std::io::Result<()>;
    fn abs_info(&self, axis: u8) -> std::io::Result<AbsInfo>;
    /// The next waiting event, `None` when there is none.
    fn read_event(&self) -> std::io::Result<Option<InputEvent>>;
    fn write_event(&self, e: InputEvent) -> std::io::Result<()>;
}

/// `_IOC(dir, 'E', nr, size)` on Linux's generic layout.
const fn evioc(dir: u32, nr: u32, size: usize) -> libc::c_ulong {
    ((dir << 30) | ((size as u32 & 0x3fff) << 16) | ((b'E' as u32) << 8) | nr) as libc::c_ulong
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
/// Kernel `struct input_event` on 64-bit: a timeval, type, code, value.
const HOST_EVENT: usize = 24;

/// A host evdev device, grabbed for exclusive use (as bhyve).
pub struct Evdev {
    file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("virtio-input: failed to open {0}: {1}")]
    Open(String, std::io::Error),
    #[error("virtio-input: {0} is no evdev")]
    NotEvdev(String),
    #[error("virtio-input: failed to grab {0}: {1}")]
    Grab(String, std::io::Error),
}

impl Evdev {
    pub fn open(path: &Path) -> Result<Self, InputError> {
        use std::os::unix::fs::OpenOptionsExt;
        let shown = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| InputError::Open(shown.clone(), e))?;
        let d = Evdev { file };
        let mut version = 0i32;
        if d.ioctl(evioc(IOC_READ, 0x01, 4), (&mut version as *mut i32).cast())
            .is_err()
        {
            return Err(InputError::NotEvdev(shown));
        }
        // EVIOCGRAB takes its argument by value.
        // SAFETY: EVIOCGRAB reads no memory.
        let r = unsafe { libc::ioctl(d.file.as_raw_fd(), evioc(IOC_WRITE, 0x90, 4) as _, 1) };
        if r < 0 {
            return Err(InputError::Grab(shown, std::io::Error::last_os_error()));
        }
        Ok(d)
    }

    /// An ioctl whose argument is a buffer the kernel fills (bounded by
    /// the size encoded in `req`, which the callers derive from it).
    fn ioctl(&self, req: libc::c_ulong, arg: *mut libc::c_void) -> std::io::Result<i32> {
        // SAFETY: every caller passes a buffer at least as large as the
        // size encoded in `req`.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), req as _, arg) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }
}

impl EvdevSource for Evdev {
    fn poll_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn name(&self) -> std::io::Result<Vec<u8>> {
        let mut b = [0u8; 128];
        self.ioctl(evioc(IOC_READ, 0x06, b.len() - 1), b.as_mut_ptr().cast())?;
        let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(b[..n].to_vec())
    }

    fn ids(&self) -> std::io::Result<[u16; 4]> {
        let mut ids = [0u16; 4];
        self.ioctl(evioc(IOC_READ, 0x02, 8), ids.as_mut_ptr().cast())?;
        Ok(ids)
    }

    fn prop_bits(&self, buf: &mut [u8]) -> std::io::Result<()> {
        self.ioctl(evioc(IOC_READ, 0x09, buf.len()), buf.as_mut_ptr().cast())
            .map(drop)
    }

    fn event_bits(&self, ty: u8, buf: &mut [u8]) -> std::io::Result<()> {
        let nr = 0x20 + u32::from(ty);
        self.ioctl(evioc(IOC_READ, nr, buf.len()), buf.as_mut_ptr().cast())
            .map(drop)
    }

    fn abs_info(&self, axis: u8) -> std::io::Result<AbsInfo> {
        let mut a = [0i32; 6];
        let nr = 0x40 + u32::from(axis);
        self.ioctl(evioc(IOC_READ, nr, 24), a.as_mut_ptr().cast())?;
        Ok(AbsInfo {
            min: a[1],
            max: a[2],
            fuzz: a[3],
            flat: a[4],
            res: a[5],
        })
    }

    fn read_event(&self) -> std::io::Result<Option<InputEvent>> {
        let mut b = [0u8; HOST_EVENT];
        match (&self.file).read(&mut b) {
            Ok(n) if n == HOST_EVENT => Ok(Some(InputEvent {
                ty: u16::from_ne_bytes([b[16], b[17]]),
                code: u16::from_ne_bytes([b[18], b[19]]),
                value: u32::from_ne_bytes([b[20], b[21], b[22], b[23]]),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_event(&self, e: InputEvent) -> std::io::Result<()> {
        // The kernel stamps injected events itself: a zero time is fine.
        let mut b = [0u8; HOST_EVENT];
        b[16..18].copy_from_slice(&e.ty.to_ne_bytes());
        b[18..20].copy_from_slice(&e.code.to_ne_bytes());
        b[20..24].copy_from_slice(&e.value.to_ne_bytes());
        (&self.file).write_all(&b)
    }
}

/// Events of one frame the device holds before SYN_REPORT; a longer
/// frame is cut (the guest gets it in pieces).
const MAX_FRAME: usize = 64;

pub struct VirtioInput {
    src: Arc<dyn EvdevSource>,
    config: [u8; CONFIG_SIZE],
    workers: Workers,
}

impl VirtioInput {
    pub fn new(src: Arc<dyn EvdevSource>) -> Self {
        VirtioInput {
            src,
            config: [0; CONFIG_SIZE],
            workers: Workers::new(),
        }
    }

    /// Answers the current select/subsel into the union and size.
    fn refresh(&mut self) {
        let (sel, sub) = (self.config[0], self.config[1]);
        let mut u = [0u8; CONFIG_SIZE - UNION];
        let size = match sel {
            select::ID_NAME => self.src.name().ok().map(|n| {
                let n = &n[..n.len().min(u.len())];
                u[..n.len()].copy_from_slice(n);
                n.len()
            }),
            // Evdev has no serial (bhyve answers empty too).
            select::ID_SERIAL => None,
            select::ID_DEVIDS => self.src.ids().ok().map(|ids| {
                for (i, v) in ids.iter().enumerate() {
                    u[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
                }
                8
            }),
            select::PROP_BITS => {
                let n = bitmap_bytes(ev::INPUT_PROP_CNT);
                self.src
                    .prop_bits(&mut u[..n])
                    .ok()
                    .map(|_| used_len(&u[..n]))
            }
            select::EV_BITS => code_count(sub).and_then(|c| {
                let n = bitmap_bytes(c).min(u.len());
                self.src
                    .event_bits(sub, &mut u[..n])
                    .ok()
                    .map(|_| used_len(&u[..n]))
            }),
            select::ABS_INFO if usize::from(sub) < ev::ABS_CNT => {
                let mut bits = [0u8; 8];
                let has = self.src.event_bits(ev::ABS as u8, &mut bits).is_ok()
                    && bits[usize::from(sub) / 8] & (1 << (sub % 8)) != 0;
                if has {
                    self.src.abs_info(sub).ok().map(|a| {
                        for (i, v) in [a.min, a.max, a.fuzz, a.flat, a.res].iter().enumerate() {
                            u[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                        }
                        20
                    })
                } else {
                    None
                }
            }
            _ => None,
        };
        match size {
            Some(n) => {
                self.config[2] = n as u8;
                self.config[UNION..].copy_from_slice(&u);
            }
            None => {
                self.config[2] = 0;
                self.config[UNION..].fill(0);
            }
        }
    }
}

/// Bytes up to the last non-zero one (virtio's bitmap size).
fn used_len(b: &[u8]) -> usize {
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)
}

/// Delivers `frame` if the event queue has a buffer for every event;
/// drops it otherwise. Returns false once the device was reset.
fn deliver(aq: &ActiveQueues, mem: &GuestMemoryMmap, frame: &[InputEvent]) -> bool {
    let notify = {
        let Some(mut q) = aq.lock(EVENTQ) else {
            return !aq.is_stopped();
        };
        let mut chains = Vec::with_capacity(frame.len());
        while chains.len() < frame.len() {
            match super::pop_chain(&mut q, mem) {
                Some(c) => chains.push((c.head_index(), segments(c, true))),
                None => break,
            }
        }
        if chains.len() < frame.len() {
            for _ in 0..chains.len() {
                q.go_to_previous_position();
            }
            log::debug!(
                "virtio-input: no buffers for {} events, frame dropped",
                frame.len()
            );
            return true;
        }
        for ((head, segs), e) in chains.iter().zip(frame) {
            let n = write_segments(mem, segs, &e.to_virtio());
            if q.add_used(mem, *head, n as u32).is_err() {
                break;
            }
        }
        q.needs_notification(mem).unwrap_or(true)
    };
    if notify {
        aq.signal_used(EVENTQ as u16);
    }
    true
}

/// Writes the driver's status events (LEDs) to the device, one batch
/// of them; says whether more are waiting (no kick will come for them).
fn status(aq: &ActiveQueues, mem: &GuestMemoryMmap, src: &dyn EvdevSource) -> bool {
    let mut events = Vec::new();
    let d = {
        let Some(mut q) = aq.lock(STATUSQ) else {
            return false;
        };
        drain_queue(&mut q, mem, |chain| {
            let mut b = [0u8; 8];
            if read_segments(mem, &segments(chain, false), &mut b) == 8 {
                events.push(InputEvent::from_virtio(b));
            }
            0
        })
    };
    if d.notify {
        aq.signal_used(STATUSQ as u16);
    }
    for e in events.into_iter().filter(|e| e.ty != ev::MSC) {
        if let Err(err) = src.write_event(e) {
            log::debug!("virtio-input: status event not written: {err}");
        }
    }
    d.more
}

fn worker(act: Activation, src: Arc<dyn EvdevSource>, stop: Arc<EventFd>) {
    let (aq, mem) = (act.queues, act.mem);
    // Events from before the driver started are stale.
    while let Ok(Some(_)) = src.read_event() {}
    // Event buffers are only taken when events come: no kicks wanted.
    if let Some(mut q) = aq.lock(EVENTQ) {
        let _ = q.disable_notification(&mem);
    }
    let mut frame = Vec::with_capacity(MAX_FRAME);
    loop {
        // A guest flooding the status queue is served a batch per round,
        // between its events, without waiting for a kick.
        let more = status(&aq, &mem, src.as_ref());
        loop {
            match src.read_event() {
                Ok(Some(e)) => {
                    frame.push(e);
                    let end = e.ty == ev::SYN && e.code == ev::SYN_REPORT;
                    if end || frame.len() == MAX_FRAME {
                        if !deliver(&aq, &mem, &frame) {
                            return;
                        }
                        frame.clear();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("virtio-input: reading the device failed: {e}");
                    return;
                }
            }
        }
        let mut fds = vec![
            (stop.as_raw_fd(), libc::POLLIN),
            (src.poll_fd(), libc::POLLIN),
        ];
        for q in [EVENTQ, STATUSQ] {
            if let Some(k) = aq.kick(q) {
                fds.push((k.as_raw_fd(), libc::POLLIN));
            }
        }
        let rev = poll_fds(&fds, if more { 0 } else { -1 });
        if rev[0] != 0 || aq.is_stopped() {
            return;
        }
        if rev[1] & (libc::POLLHUP | libc::POLLERR) != 0 && rev[1] & libc::POLLIN == 0 {
            log::warn!("virtio-input: the device is gone");
            return;
        }
        for (i, q) in [EVENTQ, STATUSQ].into_iter().enumerate() {
            if rev.get(2 + i).is_some_and(|&r| r != 0) {
                if let Some(k) = aq.kick(q) {
                    let _ = k.read();
                }
            }
        }
    }
}

impl VirtioDevice for VirtioInput {
    fn device_type(&self) -> u16 {
        types::INPUT
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_INPUT_OTHER
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
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

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only select and subsel are the driver's (bhyve refuses the rest).
        let mut changed = false;
        for (i, &b) in data.iter().enumerate() {
            if let Some(o) = offset.checked_add(i as u64).filter(|&o| o < 2) {
                self.config[o as usize] = b;
                changed = true;
            }
        }
        if changed {
            self.refresh();
        }
    }

    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let (s, src) = (stop.clone(), self.src.clone());
        self.workers
            .spawn("virtio-input", move || worker(act, src, s))?;
        Ok(())
    }

    fn reset(&mut self) {
        self.config[..2].fill(0);
        self.refresh();
        self.workers.stop();
    }
}

#[cfg(test)]
mod tests;
