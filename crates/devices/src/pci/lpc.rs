//! bhyve's LPC bridge (`pci_lpc.c`): a PIIX3-compatible PCI-ISA bridge
//! (8086:7000, class 06/01) behind which the legacy devices of `-l` sit.
//! Its configuration space carries the PIRQ route control registers at
//! 0x60–0x63 (PIRQA–D) and 0x68–0x6b (PIRQE–H); they are the shared
//! [`PirqTable`], so changing one re-steers the link's interrupts.

use std::sync::{Arc, Mutex};

use super::config::{PciConfig, PciId, CLASS_BRIDGE};
use super::intx::PirqTable;
use super::PciDevice;

pub const LPC_VENDOR: u16 = 0x8086;
pub const LPC_DEVICE: u16 = 0x7000;
pub const SUBCLASS_ISA: u8 = 0x01;
/// PIRQ register blocks: A–D and E–H.
pub const PIRQ_REGS: [(u16, usize); 2] = [(0x60, 0), (0x68, 4)];

pub struct LpcBridge {
    config: PciConfig,
    pirq: Arc<Mutex<PirqTable>>,
}

impl LpcBridge {
    pub fn new(id: PciId, pirq: Arc<Mutex<PirqTable>>) -> Self {
        let config = PciConfig::new(PciId {
            class: CLASS_BRIDGE,
            subclass: SUBCLASS_ISA,
            prog_if: 0,
            ..id
        });
        LpcBridge { config, pirq }
    }

    pub fn bhyve_id() -> PciId {
        PciId {
            vendor: LPC_VENDOR,
            device: LPC_DEVICE,
            ..PciId::default()
        }
    }

    /// PIRQ index of configuration byte `off`.
    fn pirq_index(off: u16) -> Option<usize> {
        PIRQ_REGS
            .iter()
            .find(|(base, _)| (*base..*base + 4).contains(&off))
            .map(|(base, first)| first + usize::from(off - base))
    }

    fn touches_pirq(off: u16, len: usize) -> bool {
        (0..len as u16).any(|i| Self::pirq_index(off.wrapping_add(i)).is_some())
    }
}

impl PciDevice for LpcBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn cfg_read(&mut self, offset: u16, data: &mut [u8]) -> bool {
        if !Self::touches_pirq(offset, data.len()) {
            return false;
        }
        self.config.read(offset, data);
        let t = self.pirq.lock().unwrap_or_else(|e| e.into_inner());
        for (i, b) in data.iter_mut().enumerate() {
            if let Some(k) = Self::pirq_index(offset.wrapping_add(i as u16)) {
                *b = t.read(k);
            }
        }
        true
    }

    fn cfg_write(&mut self, offset: u16, data: &[u8]) -> bool {
        if !Self::touches_pirq(offset, data.len()) {
            return false;
        }
        let mut t = self.pirq.lock().unwrap_or_else(|e| e.into_inner());
        for (i, b) in data.iter().enumerate() {
            match Self::pirq_index(offset.wrapping_add(i as u16)) {
                Some(k) => t.write(k, *b),
                None => {
                    self.config.write(offset.wrapping_add(i as u16), &[*b]);
                }
            }
        }
        true
    }
}
