//! bhyve's PCI 16550 (`pci_uart.c`, `-s N,uart[,backend]`): the same
//! 16550A as the LPC com ports ([`Uart`]) behind PCI ID 131f:2000 (a
//! SIIG CyberSerial 1-port, which FreeBSD's puc and Linux's 8250_pci
//! drive), its eight registers in I/O BAR 0, its interrupt on INTx.
//!
//! The uart drives its interrupt through an [`IrqLine`]; here that line
//! is a latch the function copies into its INTx after every access and
//! every backend exchange, all under the function's own lock. So the
//! lock order is always function → uart, whether a vCPU or the host
//! backend's thread comes in: share the function as
//! `Arc<Mutex<UartPci>>`, which is both the PCI device and the
//! backend's [`CharFrontend`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::chardev::{CharFrontend, Notifier};
use crate::pci::config::{BarKind, PciConfig, PciError, PciId};
use crate::pci::PciDevice;
use crate::uart::{Uart, UART_REG_COUNT};
use crate::{BusDevice, IrqLine};

pub const VENDOR_SIIG: u16 = 0x131f;
pub const DEVICE_CYBERSERIAL_1S: u16 = 0x2000;
/// PCI class "simple communication controller".
const CLASS_SIMPLECOMM: u8 = 0x07;
pub const UART_BAR: u8 = 0;

/// The level the uart last drove.
#[derive(Default)]
struct Latch(AtomicBool);

impl IrqLine for Latch {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::SeqCst);
    }
}

pub struct UartPci {
    config: PciConfig,
    uart: Uart,
    level: Arc<Latch>,
}

impl UartPci {
    pub fn new() -> Result<Self, PciError> {
        let mut config = PciConfig::new(PciId {
            vendor: VENDOR_SIIG,
            device: DEVICE_CYBERSERIAL_1S,
            class: CLASS_SIMPLECOMM,
            ..PciId::default()
        });
        config.add_bar(UART_BAR, BarKind::Io, UART_REG_COUNT)?;
        config.set_intpin(1);
        let level = Arc::new(Latch::default());
        Ok(UartPci {
            config,
            uart: Uart::new(level.clone()),
            level,
        })
    }

    pub fn new_shared() -> Result<Arc<Mutex<UartPci>>, PciError> {
        Ok(Arc::new(Mutex::new(Self::new()?)))
    }

    fn sync_intx(&mut self) {
        let high = self.level.0.load(Ordering::SeqCst);
        self.config.set_intx(high);
    }
}

impl PciDevice for UartPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar != UART_BAR {
            data.fill(0xff);
            return;
        }
        self.uart.read(0, offset, data);
        self.sync_intx();
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar == UART_BAR {
            self.uart.write(0, offset, data);
            self.sync_intx();
        }
    }
}

fn lock(m: &Mutex<UartPci>) -> std::sync::MutexGuard<'_, UartPci> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CharFrontend for Mutex<UartPci> {
    fn take_output(&self, buf: &mut [u8]) -> usize {
        let mut f = lock(self);
        let n = f.uart.take_output(buf);
        f.sync_intx();
        n
    }

    fn give_input(&self, data: &[u8]) -> usize {
        let mut f = lock(self);
        let n = f.uart.give_input(data);
        f.sync_intx();
        n
    }

    fn set_notifier(&self, notifier: Option<Notifier>) {
        let mut f = lock(self);
        f.uart.set_notifier(notifier);
        f.sync_intx();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{MsiMessage, PciInterrupts};
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Intx(AtomicBool, AtomicUsize);

    impl PciInterrupts for Intx {
        fn set_intx(&self, asserted: bool) {
            self.0.store(asserted, Ordering::SeqCst);
            self.1.fetch_add(1, Ordering::SeqCst);
        }
        fn route_msi(&self, _: u16, _: Option<MsiMessage>) {}
        fn fire_msi(&self, _: u16) {}
    }

    fn function() -> (Arc<Mutex<UartPci>>, Arc<Intx>) {
        let f = UartPci::new_shared().unwrap();
        let irq = Arc::new(Intx::default());
        {
            let mut d = f.lock().unwrap();
            d.config_mut().set_interrupts(irq.clone());
            d.config_mut().write(4, &[0x01, 0x00]);
        }
        (f, irq)
    }

    fn out(f: &Mutex<UartPci>, reg: u64, v: u8) {
        f.lock().unwrap().bar_write(UART_BAR, reg, &[v]);
    }

    fn inb(f: &Mutex<UartPci>, reg: u64) -> u8 {
        let mut b = [0u8];
        f.lock().unwrap().bar_read(UART_BAR, reg, &mut b);
        b[0]
    }

    #[test]
    fn identity_and_bar() {
        let f = UartPci::new().unwrap();
        assert_eq!(f.config().vendor_device(), (0x131f, 0x2000));
        assert_eq!(f.config().bar_size(UART_BAR), 8);
        assert_eq!(f.config().intpin(), 1);
        let mut class = [0u8];
        f.config().read(0x0b, &mut class);
        assert_eq!(class[0], CLASS_SIMPLECOMM);
    }

    #[test]
    fn bytes_both_ways_with_intx() {
        let (f, irq) = function();
        let notified = Arc::new(AtomicUsize::new(0));
        let n = notified.clone();
        f.set_notifier(Some(Arc::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
        })));
        // Guest output reaches the backend.
        for b in b"hi" {
            out(&f, 0, *b);
        }
        assert!(notified.load(Ordering::SeqCst) > 0);
        let mut buf = [0u8; 8];
        assert_eq!(f.take_output(&mut buf), 2);
        assert_eq!(&buf[..2], b"hi");
        // Receive interrupts go out on INTx and drop when the data is read.
        out(&f, 1, 0x01);
        assert!(!irq.0.load(Ordering::SeqCst));
        assert_eq!(f.give_input(b"x"), 1);
        assert!(irq.0.load(Ordering::SeqCst), "RX data raises INTx");
        assert_eq!(inb(&f, 2) & 0x0f, 0x0c, "IIR: receive data");
        assert_eq!(inb(&f, 0), b'x');
        assert!(!irq.0.load(Ordering::SeqCst), "reading RBR lowers INTx");
        // INTx disable in the command register gates the pin.
        f.lock().unwrap().config_mut().write(4, &[0x01, 0x04]);
        f.give_input(b"y");
        assert!(!irq.0.load(Ordering::SeqCst));
        assert!(irq.1.load(Ordering::SeqCst) >= 2);
    }
}
