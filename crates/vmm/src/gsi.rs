//! KVM's GSI routing table: which interrupt-controller inputs (or MSI
//! messages) each global system interrupt number reaches.
//!
//! KVM's default table maps GSI n to I/O APIC pin n, so the in-kernel PIT
//! (which raises GSI 0) would hit pin 0. bhyve's PIT interrupts I/O APIC
//! pin 2 and its MP table says so, and so does every PC chipset; like
//! QEMU's KVM PC we install [`GsiRouting::pc`]: GSI 0 → PIC pin 0 + I/O
//! APIC pin 2, GSI 1 and 3–15 → PIC pin n + I/O APIC pin n, GSI 16–23 →
//! I/O APIC pin n. GSI 2 keeps KVM's default (PIC master pin 2 + I/O APIC
//! pin 2) so that raising "line 2" still reaches pin 2.
//!
//! Order matters when two GSIs share a pin: KVM keeps one GSI per
//! irqchip pin for acknowledgements (the last one in the table), and the
//! PIT only re-arms when GSI 0's interrupt is acknowledged. So GSI 2's
//! pin-2 route comes before GSI 0's; [`GsiRouting::acked_gsi`] tells
//! which GSI an irqchip pin's EOI is reported to.
//!
//! The table is kept here and replaced whole by `KVM_SET_GSI_ROUTING`
//! (the only way KVM offers); MSI routes are added on free GSIs from 24 up.

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};

/// Pins of KVM's in-kernel I/O APIC.
pub const IOAPIC_PINS: u32 = 24;
/// KVM accepts GSIs below this (`KVM_MAX_IRQ_ROUTES`), and at most this
/// many routes.
pub const MAX_ROUTES: u32 = 4096;
/// The first GSI not wired to an I/O APIC pin: where MSI routes start.
pub const FIRST_MSI_GSI: u32 = IOAPIC_PINS;

/// An in-kernel interrupt controller input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IrqChip {
    PicMaster,
    PicSlave,
    Ioapic,
}

impl IrqChip {
    fn kvm_id(self) -> u32 {
        match self {
            IrqChip::PicMaster => KVM_IRQCHIP_PIC_MASTER,
            IrqChip::PicSlave => KVM_IRQCHIP_PIC_SLAVE,
            IrqChip::Ioapic => KVM_IRQCHIP_IOAPIC,
        }
    }

    fn pins(self) -> u32 {
        match self {
            IrqChip::PicMaster | IrqChip::PicSlave => 8,
            IrqChip::Ioapic => IOAPIC_PINS,
        }
    }
}

/// Where one route of a GSI goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Irqchip { chip: IrqChip, pin: u32 },
    Msi { address: u64, data: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GsiError {
    #[error("GSI {0} is out of range (KVM allows 0 to {max})", max = MAX_ROUTES - 1)]
    BadGsi(u32),
    #[error("{chip:?} has no pin {pin}")]
    BadPin { chip: IrqChip, pin: u32 },
    #[error("GSI {0} already has a route that conflicts")]
    Conflict(u32),
    #[error("no free GSI for another MSI route")]
    Full,
}

/// The GSI routing table of one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GsiRouting {
    /// In the order handed to KVM.
    entries: Vec<(u32, Route)>,
}

impl GsiRouting {
    /// An empty table (no GSI reaches anything).
    pub fn new() -> Self {
        Self::default()
    }

    /// The PC routing described in the module documentation.
    pub fn pc() -> Self {
        let mut r = Self::new();
        let mut add = |gsi, chip, pin| {
            r.add(gsi, Route::Irqchip { chip, pin })
                .expect("the PC routing is valid")
        };
        // GSI 2 first: GSI 0 must own I/O APIC pin 2's acknowledgements.
        add(2, IrqChip::PicMaster, 2);
        add(2, IrqChip::Ioapic, 2);
        for gsi in (0..16).filter(|&g| g != 2) {
            let (chip, pin) = if gsi < 8 {
                (IrqChip::PicMaster, gsi)
            } else {
                (IrqChip::PicSlave, gsi - 8)
            };
            add(gsi, chip, pin);
            add(gsi, IrqChip::Ioapic, if gsi == 0 { 2 } else { gsi });
        }
        for gsi in 16..IOAPIC_PINS {
            add(gsi, IrqChip::Ioapic, gsi);
        }
        r
    }

    /// Adds a route for `gsi`, with KVM's rules: at most one route per
    /// irqchip for a GSI, and an MSI GSI has only that route.
    pub fn add(&mut self, gsi: u32, route: Route) -> Result<(), GsiError> {
        if gsi >= MAX_ROUTES {
            return Err(GsiError::BadGsi(gsi));
        }
        if self.entries.len() >= MAX_ROUTES as usize {
            return Err(GsiError::Full);
        }
        if let Route::Irqchip { chip, pin } = route {
            if pin >= chip.pins() {
                return Err(GsiError::BadPin { chip, pin });
            }
        }
        let conflict = self.routes(gsi).any(|old| match (old, route) {
            (Route::Irqchip { chip: a, .. }, Route::Irqchip { chip: b, .. }) => a == b,
            _ => true,
        });
        if conflict {
            return Err(GsiError::Conflict(gsi));
        }
        self.entries.push((gsi, route));
        Ok(())
    }

    /// Routes a new GSI (the lowest free one from [`FIRST_MSI_GSI`]) to an
    /// MSI message and returns it.
    pub fn add_msi(&mut self, address: u64, data: u32) -> Result<u32, GsiError> {
        let mut used = vec![false; MAX_ROUTES as usize];
        for (g, _) in &self.entries {
            used[*g as usize] = true;
        }
        let gsi = (FIRST_MSI_GSI..MAX_ROUTES)
            .find(|&g| !used[g as usize])
            .ok_or(GsiError::Full)?;
        self.add(gsi, Route::Msi { address, data })?;
        Ok(gsi)
    }

    /// Removes every route of `gsi`; returns whether there was one.
    pub fn remove(&mut self, gsi: u32) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(g, _)| *g != gsi);
        self.entries.len() != before
    }

    /// The routes of `gsi`, in table order.
    pub fn routes(&self, gsi: u32) -> impl Iterator<Item = Route> + '_ {
        self.entries
            .iter()
            .filter(move |(g, _)| *g == gsi)
            .map(|(_, r)| *r)
    }

    /// The GSI KVM reports an acknowledgement (EOI) of `chip`'s `pin` to:
    /// the last route to that pin, as KVM builds its reverse map.
    pub fn acked_gsi(&self, chip: IrqChip, pin: u32) -> Option<u32> {
        self.entries
            .iter()
            .rev()
            .find(|(_, r)| *r == Route::Irqchip { chip, pin })
            .map(|(g, _)| *g)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The table in `KVM_SET_GSI_ROUTING`'s form.
    pub fn to_kvm(&self) -> KvmIrqRouting {
        let entries: Vec<kvm_irq_routing_entry> = self
            .entries
            .iter()
            .map(|&(gsi, route)| {
                let mut e = kvm_irq_routing_entry {
                    gsi,
                    ..Default::default()
                };
                match route {
                    Route::Irqchip { chip, pin } => {
                        e.type_ = KVM_IRQ_ROUTING_IRQCHIP;
                        e.u.irqchip.irqchip = chip.kvm_id();
                        e.u.irqchip.pin = pin;
                    }
                    Route::Msi { address, data } => {
                        e.type_ = KVM_IRQ_ROUTING_MSI;
                        e.u.msi.address_lo = address as u32;
                        e.u.msi.address_hi = (address >> 32) as u32;
                        e.u.msi.data = data;
                    }
                }
                e
            })
            .collect();
        // `add` keeps the table within KVM's (and the wrapper's) limit.
        KvmIrqRouting::from_entries(&entries).expect("at most MAX_ROUTES entries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(chip: IrqChip, pin: u32) -> Route {
        Route::Irqchip { chip, pin }
    }

    #[test]
    fn pc_routing() {
        let r = GsiRouting::pc();
        assert_eq!(r.len(), 16 * 2 + 8);
        let routes = |g| r.routes(g).collect::<Vec<_>>();
        assert_eq!(
            routes(0),
            vec![chip(IrqChip::PicMaster, 0), chip(IrqChip::Ioapic, 2)]
        );
        assert_eq!(
            routes(2),
            vec![chip(IrqChip::PicMaster, 2), chip(IrqChip::Ioapic, 2)]
        );
        assert_eq!(
            routes(4),
            vec![chip(IrqChip::PicMaster, 4), chip(IrqChip::Ioapic, 4)]
        );
        assert_eq!(
            routes(14),
            vec![chip(IrqChip::PicSlave, 6), chip(IrqChip::Ioapic, 14)]
        );
        assert_eq!(routes(23), vec![chip(IrqChip::Ioapic, 23)]);
        assert!(routes(24).is_empty());
        // The PIT's acknowledgements reach GSI 0 through either chip.
        assert_eq!(r.acked_gsi(IrqChip::Ioapic, 2), Some(0));
        assert_eq!(r.acked_gsi(IrqChip::PicMaster, 0), Some(0));
        assert_eq!(r.acked_gsi(IrqChip::Ioapic, 0), None);
        assert_eq!(r.acked_gsi(IrqChip::Ioapic, 9), Some(9));
    }

    #[test]
    fn msi_routes_take_free_gsis() {
        let mut r = GsiRouting::pc();
        assert_eq!(r.add_msi(0xfee0_0000, 0x41), Ok(24));
        assert_eq!(r.add_msi(0xfee0_1000, 0x42), Ok(25));
        assert!(r.remove(24));
        assert!(!r.remove(24));
        assert_eq!(r.add_msi(0x1_fee0_0000, 0x43), Ok(24));
        let k = r.to_kvm();
        let e = k.as_slice().last().unwrap();
        assert_eq!(e.gsi, 24);
        assert_eq!(e.type_, KVM_IRQ_ROUTING_MSI);
        // SAFETY: an MSI entry, written through the msi member above.
        let msi = unsafe { e.u.msi };
        assert_eq!(
            (msi.address_lo, msi.address_hi, msi.data),
            (0xfee0_0000, 1, 0x43)
        );
        assert_eq!(k.as_slice().len(), r.len());
    }

    #[test]
    fn kvm_rules_enforced() {
        let mut r = GsiRouting::pc();
        assert_eq!(
            r.add(3, chip(IrqChip::Ioapic, 5)),
            Err(GsiError::Conflict(3))
        );
        assert_eq!(
            r.add(30, chip(IrqChip::Ioapic, 24)),
            Err(GsiError::BadPin {
                chip: IrqChip::Ioapic,
                pin: 24
            })
        );
        assert_eq!(
            r.add(30, chip(IrqChip::PicSlave, 8)),
            Err(GsiError::BadPin {
                chip: IrqChip::PicSlave,
                pin: 8
            })
        );
        assert_eq!(
            r.add(MAX_ROUTES, chip(IrqChip::Ioapic, 1)),
            Err(GsiError::BadGsi(MAX_ROUTES))
        );
        let msi = Route::Msi {
            address: 0xfee0_0000,
            data: 0,
        };
        assert_eq!(r.add(5, msi), Err(GsiError::Conflict(5)));
        r.add(40, msi).unwrap();
        assert_eq!(
            r.add(40, chip(IrqChip::Ioapic, 1)),
            Err(GsiError::Conflict(40))
        );
        let mut full = GsiRouting::new();
        for _ in FIRST_MSI_GSI..MAX_ROUTES {
            full.add_msi(0xfee0_0000, 0).unwrap();
        }
        assert_eq!(full.add_msi(0xfee0_0000, 0), Err(GsiError::Full));
    }
}
