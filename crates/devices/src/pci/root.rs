//! Bus 0: its functions, configuration accesses (mechanism #1 and
//! ECAM), BAR placement in bhyve's windows, and keeping each decoded BAR
//! registered on the port or memory bus as the guest moves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::config::{BarKind, BarRegion, ROM_BAR};
use super::intx::{IntxRoute, PirqTable};
use super::{
    le_value, put_le, PciDevice, PciInterrupts, CFG_SPACE_SIZE, IO_BASE, IO_LIMIT, LEGACY_CFG_SIZE,
    MEM32_BASE, MEM32_LIMIT, MEM64_LOW_THRESHOLD, PCI_FUNCS, PCI_SLOTS,
};
use crate::bus::{Bus, BusDevice};
use crate::reset::ResetControl;

/// A function's address on bus 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub slot: u8,
    pub func: u8,
}

/// Where BARs may go: `[base, end)` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciWindows {
    pub io: (u64, u64),
    pub mem32: (u64, u64),
    pub mem64: (u64, u64),
}

impl PciWindows {
    /// bhyve's windows for a VM with `highmem` bytes above 4 GiB.
    pub fn bhyve(highmem: u64) -> Self {
        PciWindows {
            io: (IO_BASE, IO_LIMIT),
            mem32: (MEM32_BASE, MEM32_LIMIT),
            mem64: super::mem64_window(highmem),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    #[error("PCI slot {slot} function {func} is out of range or already in use")]
    BadAddress { slot: u8, func: u8 },
    #[error("PCI {slot}:{func}: no room for BAR {bar} ({size:#x} bytes) in its window")]
    NoRoom {
        slot: u8,
        func: u8,
        bar: u8,
        size: u64,
    },
}

/// What a function's BAR looks like on a bus: forwards to the device,
/// except the MSI-X table/PBA and the ROM, which the configuration
/// serves.
struct BarMapping {
    dev: Arc<Mutex<dyn PciDevice>>,
    bar: u8,
}

impl BusDevice for BarMapping {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let mut d = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        if self.bar == ROM_BAR {
            d.config().rom_read(offset, data);
        } else if d.config().msix_claims(self.bar, offset) {
            d.config().msix_read(self.bar, offset, data);
        } else {
            d.bar_read(self.bar, offset, data);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let mut d = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        if self.bar == ROM_BAR {
            return;
        }
        if d.config().msix_claims(self.bar, offset) {
            d.config_mut().msix_write(self.bar, offset, data);
        } else {
            d.bar_write(self.bar, offset, data);
        }
    }
}

struct Function {
    dev: Arc<Mutex<dyn PciDevice>>,
    /// BARs registered on a bus now (only those whose insert succeeded).
    mapped: Vec<BarRegion>,
}

pub struct PciRoot {
    functions: HashMap<PciAddress, Function>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    windows: PciWindows,
    next_io: u64,
    next_mem32: u64,
    next_mem64: u64,
    pirq: Arc<Mutex<PirqTable>>,
    /// bhyve routes per (slot, pin): functions of a slot share.
    intx: HashMap<(u8, u8), IntxRoute>,
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

impl PciRoot {
    pub fn new(
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        windows: PciWindows,
        pirq: Arc<Mutex<PirqTable>>,
    ) -> Self {
        PciRoot {
            functions: HashMap::new(),
            pio,
            mmio,
            next_io: windows.io.0,
            next_mem32: windows.mem32.0,
            next_mem64: windows.mem64.0,
            windows,
            pirq,
            intx: HashMap::new(),
        }
    }

    pub fn pirq(&self) -> &Arc<Mutex<PirqTable>> {
        &self.pirq
    }

    /// Adds a function: routes its INTx pin, places and enables its BARs
    /// (as bhyve does, so guests booted without firmware find them
    /// programmed) and attaches the interrupt outputs `irq` builds for
    /// the route. Returns the INTx route, if the function has a pin.
    pub fn add(
        &mut self,
        addr: PciAddress,
        dev: Arc<Mutex<dyn PciDevice>>,
        irq: impl FnOnce(Option<IntxRoute>) -> Arc<dyn PciInterrupts>,
    ) -> Result<Option<IntxRoute>, RootError> {
        let bad = RootError::BadAddress {
            slot: addr.slot,
            func: addr.func,
        };
        if addr.slot >= PCI_SLOTS || addr.func >= PCI_FUNCS || self.functions.contains_key(&addr) {
            return Err(bad);
        }
        let route = {
            let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
            let pin = d.config().intpin();
            let route = (pin != 0).then(|| {
                *self
                    .intx
                    .entry((addr.slot, pin))
                    .or_insert_with(|| self.pirq.lock().unwrap_or_else(|e| e.into_inner()).alloc())
            });
            if let Some(r) = route {
                let line = self
                    .pirq
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .irq(r.pirq)
                    .unwrap_or(0xff);
                d.config_mut()
                    .set_byte(super::config::REG_INTLINE as u8, line);
            }
            let mut cmd = d.config().command();
            for (bar, kind, size) in d.config().declared_bars() {
                let at = self.place(kind, size).ok_or(RootError::NoRoom {
                    slot: addr.slot,
                    func: addr.func,
                    bar,
                    size,
                })?;
                d.config_mut().set_bar_addr(bar, at);
                cmd |= match kind {
                    BarKind::Io => super::config::CMD_IO,
                    _ => super::config::CMD_MEM,
                };
            }
            d.config_mut()
                .set_word(super::config::REG_COMMAND as u8, cmd);
            d.config_mut().set_interrupts(irq(route));
            route
        };
        // Function 0 of a slot with several functions says so.
        if addr.func != 0 {
            if let Some(f0) = self.functions.get(&PciAddress {
                slot: addr.slot,
                func: 0,
            }) {
                let mut d = f0.dev.lock().unwrap_or_else(|e| e.into_inner());
                let ht = d.config().header_type() | 0x80;
                d.config_mut()
                    .set_byte(super::config::REG_HEADER_TYPE as u8, ht);
            }
        } else if (1..PCI_FUNCS).any(|f| {
            self.functions.contains_key(&PciAddress {
                slot: addr.slot,
                func: f,
            })
        }) {
            let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
            let ht = d.config().header_type() | 0x80;
            d.config_mut()
                .set_byte(super::config::REG_HEADER_TYPE as u8, ht);
        }
        self.functions.insert(
            addr,
            Function {
                dev,
                mapped: Vec::new(),
            },
        );
        self.remap(addr);
        Ok(route)
    }

    /// bhyve's placement: naturally aligned, from the bottom of the
    /// window; small 64-bit BARs go below 4 GiB. Ranges a platform
    /// device already holds (pc-testdev's IRQ ports at 0x2000) are
    /// skipped, so the BAR is decoded where the guest reads it.
    fn place(&mut self, kind: BarKind, size: u64) -> Option<u64> {
        let bus = if kind == BarKind::Io {
            &self.pio
        } else {
            &self.mmio
        };
        let (next, end) = match kind {
            BarKind::Io => (&mut self.next_io, self.windows.io.1),
            BarKind::Mem64 if size > MEM64_LOW_THRESHOLD => {
                (&mut self.next_mem64, self.windows.mem64.1)
            }
            _ => (&mut self.next_mem32, self.windows.mem32.1),
        };
        let mut at = align_up(*next, size)?;
        while !bus.is_free(at, size) {
            at = align_up(at.checked_add(size)?, size)?;
            if at >= end {
                return None;
            }
        }
        let top = at.checked_add(size)?;
        if top > end {
            return None;
        }
        *next = top;
        Some(at)
    }

    /// Brings the bus registrations of `addr`'s BARs in line with its
    /// configuration. A BAR the guest put where it overlaps another
    /// range, wraps, or leaves the I/O space is simply not decoded.
    fn remap(&mut self, addr: PciAddress) {
        let Some(f) = self.functions.get_mut(&addr) else {
            return;
        };
        let regions = f
            .dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .config()
            .bar_regions();
        let (pio, mmio) = (&self.pio, &self.mmio);
        let bus = |kind| if kind == BarKind::Io { pio } else { mmio };
        let mut unmapped = Vec::new();
        f.mapped.retain(|m| {
            let keep = regions.contains(m);
            if !keep {
                bus(m.kind).remove(m.addr);
                unmapped.push(m.bar);
            }
            keep
        });
        let mut mapped = Vec::new();
        for r in regions {
            if f.mapped.contains(&r) || r.addr == 0 {
                continue;
            }
            if r.kind == BarKind::Io && r.addr.saturating_add(r.size) > IO_LIMIT {
                continue;
            }
            let mapping = Arc::new(Mutex::new(BarMapping {
                dev: f.dev.clone(),
                bar: r.bar,
            }));
            match bus(r.kind).insert(r.addr, r.size, mapping) {
                Ok(()) => {
                    f.mapped.push(r);
                    mapped.push((r.bar, r.addr));
                }
                Err(e) => log::debug!(
                    "pci {}:{} BAR {} at {:#x}: {e}",
                    addr.slot,
                    addr.func,
                    r.bar,
                    r.addr
                ),
            }
        }
        if unmapped.is_empty() && mapped.is_empty() {
            return;
        }
        // Removals first: a BAR that moved is unmapped, then mapped.
        let mut d = f.dev.lock().unwrap_or_else(|e| e.into_inner());
        for bar in unmapped {
            d.bar_mapped(bar, None);
        }
        for (bar, at) in mapped {
            d.bar_mapped(bar, Some(at));
        }
    }

    fn function(&self, bus: u8, slot: u8, func: u8) -> Option<PciAddress> {
        let a = PciAddress { slot, func };
        (bus == 0 && self.functions.contains_key(&a)).then_some(a)
    }

    /// A configuration read; absent functions read all ones.
    pub fn cfg_read(&self, bus: u8, slot: u8, func: u8, off: u16, data: &mut [u8]) {
        let Some(a) = self.function(bus, slot, func) else {
            data.fill(0xff);
            return;
        };
        let mut d = self.functions[&a]
            .dev
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if usize::from(off) >= CFG_SPACE_SIZE {
            data.fill(0xff);
        } else if !d.cfg_read(off, data) {
            d.config().read(off, data);
        }
    }

    /// A configuration write; writes to absent functions are dropped.
    pub fn cfg_write(&mut self, bus: u8, slot: u8, func: u8, off: u16, data: &[u8]) {
        let Some(a) = self.function(bus, slot, func) else {
            return;
        };
        if usize::from(off) >= LEGACY_CFG_SIZE {
            return;
        }
        let effects = {
            let mut d = self.functions[&a]
                .dev
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if d.cfg_write(off, data) {
                None
            } else {
                Some(d.config_mut().write(off, data))
            }
        };
        if effects.is_some_and(|e| e.bars) {
            self.remap(a);
        }
    }

    /// The functions present, in address order (for tables and logs).
    pub fn addresses(&self) -> Vec<PciAddress> {
        let mut v: Vec<_> = self.functions.keys().copied().collect();
        v.sort();
        v
    }

    /// The INTx routes in use: `(slot, pin 1–4, route)`.
    pub fn intx_routes(&self) -> Vec<(u8, u8, IntxRoute)> {
        let mut v: Vec<_> = self.intx.iter().map(|(k, r)| (k.0, k.1, *r)).collect();
        v.sort_by_key(|e| (e.0, e.1));
        v
    }
}

/// Configuration mechanism #1 at 0xcf8–0xcff, with the reset control
/// register at 0xcf9 sharing the range (byte accesses only, as on the
/// PIIX).
pub struct ConfigIo {
    root: Arc<Mutex<PciRoot>>,
    address: u32,
    reset: Option<ResetControl>,
}

pub const CONF1_ENABLE: u32 = 1 << 31;

impl ConfigIo {
    pub fn new(root: Arc<Mutex<PciRoot>>, reset: Option<ResetControl>) -> Self {
        ConfigIo {
            root,
            address: 0,
            reset,
        }
    }

    /// (bus, slot, func, register) of the latched address plus `byte`.
    fn target(&self, byte: u64) -> Option<(u8, u8, u8, u16)> {
        let a = self.address;
        (a & CONF1_ENABLE != 0).then_some({
            (
                (a >> 16) as u8,
                ((a >> 11) & 0x1f) as u8,
                ((a >> 8) & 0x7) as u8,
                ((a & 0xfc) as u16) | byte as u16,
            )
        })
    }
}

impl BusDevice for ConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => put_le(data, self.address.into()),
            (1, 1) => match &mut self.reset {
                Some(r) => r.read(crate::reset::RESET_PORT, 0, data),
                None => data.fill(0xff),
            },
            (4..=7, n) if offset as usize + n <= 8 => match self.target(offset - 4) {
                Some((b, s, f, r)) => {
                    let root = self.root.lock().unwrap_or_else(|e| e.into_inner());
                    root.cfg_read(b, s, f, r, data);
                }
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => self.address = le_value(data) as u32,
            (1, 1) => {
                if let Some(r) = &mut self.reset {
                    r.write(crate::reset::RESET_PORT, 0, data);
                }
            }
            (4..=7, n) if offset as usize + n <= 8 => {
                if let Some((b, s, f, r)) = self.target(offset - 4) {
                    let mut root = self.root.lock().unwrap_or_else(|e| e.into_inner());
                    root.cfg_write(b, s, f, r, data);
                }
            }
            _ => {}
        }
    }
}

/// PCI Express enhanced configuration access (ECAM): 4 KiB of
/// configuration space per function, 1 MiB per bus.
pub struct Ecam {
    root: Arc<Mutex<PciRoot>>,
}

impl Ecam {
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        Ecam { root }
    }

    fn target(offset: u64) -> (u8, u8, u8, u16) {
        (
            (offset >> 20) as u8,
            ((offset >> 15) & 0x1f) as u8,
            ((offset >> 12) & 0x7) as u8,
            (offset & 0xfff) as u16,
        )
    }
}

impl BusDevice for Ecam {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let (b, s, f, r) = Self::target(offset);
        // An access must stay inside one function's space.
        if usize::from(r) + data.len() > CFG_SPACE_SIZE {
            data.fill(0xff);
            return;
        }
        let root = self.root.lock().unwrap_or_else(|e| e.into_inner());
        root.cfg_read(b, s, f, r, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (b, s, f, r) = Self::target(offset);
        if usize::from(r) + data.len() > CFG_SPACE_SIZE {
            return;
        }
        let mut root = self.root.lock().unwrap_or_else(|e| e.into_inner());
        root.cfg_write(b, s, f, r, data);
    }
}
