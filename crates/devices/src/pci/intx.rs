//! INTx routing, as bhyve's `pci_irq.c` does it: each (slot, pin) in use
//! gets an I/O APIC pin from 16–23 and one of the LPC bridge's eight PIRQ
//! links, round-robin, so link k always pairs with I/O APIC pin 16 + k.
//! A PIRQ register (PIIX layout: bit 7 disables, bits 0–3 name an ISA
//! IRQ) additionally steers the link to the 8259 for guests that use the
//! PICs; the vmm learns about such changes through a [`PirqRouter`].
//!
//! Lines are level-triggered and shared: [`IntxLines`] counts asserting
//! functions per pin and drives the pin while the count is non-zero.

use std::sync::{Arc, Mutex};

use crate::IrqLine;

pub const PIRQ_COUNT: usize = 8;
/// A PIRQ register's "not routed" bit and IRQ field.
pub const PIRQ_DISABLED: u8 = 0x80;
pub const PIRQ_IRQ: u8 = 0x0f;
/// ISA IRQs a PIRQ may use (bhyve's mask: 3–7, 9–12, 14, 15).
pub const PIRQ_PERMITTED: u16 = 0xdef8;
/// The I/O APIC pin of PIRQ link 0.
pub const FIRST_PCI_PIN: u32 = 16;

/// Where one function's INTx pin goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntxRoute {
    /// PIRQ link 0–7 (LNKA–LNKH).
    pub pirq: u8,
    /// I/O APIC pin (GSI) 16–23.
    pub ioapic_pin: u32,
}

/// Told when a PIRQ register changes: `irq` is the ISA IRQ the link now
/// also drives, or `None` when it is disabled or not a permitted IRQ.
pub trait PirqRouter: Send + Sync {
    fn pirq_changed(&self, pirq: u8, irq: Option<u8>);
}

/// The PIRQ registers and the allocation state behind them.
pub struct PirqTable {
    regs: [u8; PIRQ_COUNT],
    /// ISA IRQs in use by LPC devices (bit n: IRQ n).
    reserved: u16,
    irq_use: [u32; 16],
    next: usize,
    router: Option<Arc<dyn PirqRouter>>,
}

impl PirqTable {
    /// `reserved`: ISA IRQs of the LPC devices (COM ports, SCI), which
    /// PIRQs are not given at start.
    pub fn new(reserved: u16) -> Self {
        PirqTable {
            regs: [PIRQ_DISABLED; PIRQ_COUNT],
            reserved,
            irq_use: [0; 16],
            next: 0,
            router: None,
        }
    }

    pub fn set_router(&mut self, router: Arc<dyn PirqRouter>) {
        self.router = Some(router);
        for k in 0..PIRQ_COUNT {
            self.notify(k);
        }
    }

    /// The next (slot, pin)'s route. A link used for the first time is
    /// given the least-used permitted, unreserved ISA IRQ.
    pub fn alloc(&mut self) -> IntxRoute {
        let k = self.next % PIRQ_COUNT;
        self.next += 1;
        if self.regs[k] & PIRQ_DISABLED != 0 {
            let best = (0..16u8)
                .filter(|&i| PIRQ_PERMITTED & !self.reserved & (1 << i) != 0)
                .min_by_key(|&i| (self.irq_use[i as usize], i));
            if let Some(irq) = best {
                self.irq_use[irq as usize] += 1;
                self.regs[k] = irq;
                self.notify(k);
            }
        }
        IntxRoute {
            pirq: k as u8,
            ioapic_pin: FIRST_PCI_PIN + k as u32,
        }
    }

    /// The ISA IRQ link `k` drives now, if any (the Interrupt Line value
    /// bhyve reports; 0xff when none).
    pub fn irq(&self, k: u8) -> Option<u8> {
        let r = *self.regs.get(k as usize)?;
        let irq = r & PIRQ_IRQ;
        (r & PIRQ_DISABLED == 0 && PIRQ_PERMITTED & (1 << irq) != 0).then_some(irq)
    }

    pub fn read(&self, k: usize) -> u8 {
        self.regs.get(k).copied().unwrap_or(PIRQ_DISABLED)
    }

    /// A guest write of PIRQ register `k` (reserved bits 4–6 read 0).
    pub fn write(&mut self, k: usize, v: u8) {
        let Some(r) = self.regs.get_mut(k) else {
            return;
        };
        let v = v & (PIRQ_DISABLED | PIRQ_IRQ);
        if *r != v {
            *r = v;
            self.notify(k);
        }
    }

    fn notify(&self, k: usize) {
        if let Some(router) = &self.router {
            router.pirq_changed(k as u8, self.irq(k as u8));
        }
    }
}

/// The eight shared PCI interrupt pins (I/O APIC 16–23).
pub struct IntxLines {
    lines: Vec<Arc<dyn IrqLine>>,
    count: Mutex<[u32; PIRQ_COUNT]>,
}

impl IntxLines {
    /// `lines[k]` drives I/O APIC pin 16 + k.
    pub fn new(lines: Vec<Arc<dyn IrqLine>>) -> Self {
        IntxLines {
            lines,
            count: Mutex::new([0; PIRQ_COUNT]),
        }
    }

    /// One function asserts (or stops asserting) link `pirq`. Callers
    /// report transitions only (a function's own level is tracked by its
    /// configuration).
    pub fn set(&self, pirq: u8, asserted: bool) {
        let k = pirq as usize % PIRQ_COUNT;
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let before = c[k];
        c[k] = if asserted {
            before.saturating_add(1)
        } else {
            before.saturating_sub(1)
        };
        if (before == 0) != (c[k] == 0) {
            if let Some(line) = self.lines.get(k) {
                line.set_level(c[k] != 0);
            }
        }
    }
}
