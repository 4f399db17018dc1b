//! The PC's legacy devices on the port and MMIO buses: COM ports behind
//! the LPC bridge, pc-testdev, the 0xcf9 reset register and the i8042
//! (whose 0xfe command resets the machine).

use std::sync::{Arc, Mutex};

use bhyve_devices::atkbdc::{KBD_DATA_PORT, KBD_STS_CTL_PORT};
use bhyve_devices::pctestdev::IRQ_PINCOUNT_MIN;
use bhyve_devices::reset::{RESET_PORT, RESET_PORT_LEN};
use bhyve_devices::uart::{COM_PORTS, UART_REG_COUNT};
use bhyve_devices::{Atkbdc, Bus, BusError, IrqLine, PcTestDev, ResetControl, Uart, VmControl};

use crate::kvm_vm::KvmVm;
use crate::serial::SerialBackend;
use crate::MachineError;

/// IOAPIC pins of KVM's in-kernel IOAPIC, driven by pc-testdev's IRQ ports.
const IOAPIC_PINS: usize = IRQ_PINCOUNT_MIN;

/// What the LPC bridge and the fixed platform carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacySpec {
    /// `(index 0..4, backend)` for each configured `lpc.comN.path`.
    pub com: Vec<(usize, String)>,
    pub pc_testdev: bool,
}

/// The buses and the host-side helpers that must live as long as the VM.
pub struct Platform {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    serial: Vec<SerialBackend>,
}

impl Platform {
    /// Builds the devices; `vm` supplies interrupt lines, `control` is how
    /// devices stop the VM.
    pub fn build(vm: &KvmVm, control: Arc<dyn VmControl>, spec: &LegacySpec) -> Result<Self, MachineError> {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let bus_err = |what: &str, e: BusError| MachineError::new(format!("{what}: {e}"));
        pio.insert(RESET_PORT, RESET_PORT_LEN, Arc::new(Mutex::new(ResetControl::new(control.clone()))))
            .map_err(|e| bus_err("reset port", e))?;
        let kbd = Arc::new(Mutex::new(Atkbdc::new(control.clone())));
        pio.insert(KBD_DATA_PORT, 1, kbd.clone()).map_err(|e| bus_err("i8042", e))?;
        pio.insert(KBD_STS_CTL_PORT, 1, kbd).map_err(|e| bus_err("i8042", e))?;
        let mut serial = Vec::new();
        for (index, path) in &spec.com {
            let (base, irq) = COM_PORTS[*index];
            let uart = Arc::new(Mutex::new(Uart::new(vm.irq_line(irq))));
            let name = format!("com{}", index + 1);
            let backend = SerialBackend::open(path, uart.clone())
                .map_err(|e| MachineError::new(format!("Unable to initialize backend '{path}' for LPC device {name}: {e}")))?;
            pio.insert(base, UART_REG_COUNT, uart).map_err(|e| bus_err(&name, e))?;
            serial.push(backend);
        }
        if spec.pc_testdev {
            let irqs: Vec<Arc<dyn IrqLine>> = (0..IOAPIC_PINS as u32).map(|i| vm.irq_line(i)).collect();
            let dev = PcTestDev::new(control, irqs).map_err(|e| MachineError::new(e.to_string()))?;
            let ranges = dev.pio_ranges();
            let (mbase, mlen) = dev.mmio_range();
            let dev = Arc::new(Mutex::new(dev));
            for (base, len) in ranges {
                pio.insert(base, len, dev.clone()).map_err(|e| bus_err("pc-testdev", e))?;
            }
            mmio.insert(mbase, mlen, dev).map_err(|e| bus_err("pc-testdev", e))?;
        }
        Ok(Self { pio, mmio, serial })
    }

    /// Stops the serial backends (flushing what the guest wrote) and gives
    /// the terminal back.
    pub fn shutdown(&mut self) {
        for s in self.serial.drain(..) {
            s.close();
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown();
    }
}
