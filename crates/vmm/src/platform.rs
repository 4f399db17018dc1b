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
use crate::MachineError;
use bhyve_backends::{open_char_backend, BackendHandle, CharBackend};

/// IOAPIC pins of KVM's in-kernel IOAPIC, driven by pc-testdev's IRQ ports.
const IOAPIC_PINS: usize = IRQ_PINCOUNT_MIN;

/// What the LPC bridge and the fixed platform carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacySpec {
    /// `(index 0..4, backend)` for each configured `lpc.comN.path`.
    pub com: Vec<(usize, String)>,
    pub pc_testdev: bool,
}

/// Opens the COM ports' host backends (terminal, TTY, socket) before
/// anything else happens, so a bad `-l` fails early; bhyve's wording.
pub fn open_serial_backends(spec: &LegacySpec) -> Result<Vec<(usize, CharBackend)>, MachineError> {
    spec.com
        .iter()
        .map(|(index, path)| {
            open_char_backend(path).map(|b| (*index, b)).map_err(|e| {
                MachineError::new(format!(
                    "Unable to initialize backend '{path}' for LPC device com{}: {e}",
                    index + 1
                ))
            })
        })
        .collect()
}

/// The buses and the host-side helpers that must live as long as the VM.
pub struct Platform {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    serial: Vec<BackendHandle>,
}

impl Platform {
    /// Builds the devices; `vm` supplies interrupt lines, `control` is how
    /// devices stop the VM.
    pub fn build(
        vm: &KvmVm,
        control: Arc<dyn VmControl>,
        spec: &LegacySpec,
        serial_backends: Vec<(usize, CharBackend)>,
    ) -> Result<Self, MachineError> {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let bus_err = |what: &str, e: BusError| MachineError::new(format!("{what}: {e}"));
        pio.insert(
            RESET_PORT,
            RESET_PORT_LEN,
            Arc::new(Mutex::new(ResetControl::new(control.clone()))),
        )
        .map_err(|e| bus_err("reset port", e))?;
        let kbd = Arc::new(Mutex::new(Atkbdc::new(control.clone())));
        pio.insert(KBD_DATA_PORT, 1, kbd.clone())
            .map_err(|e| bus_err("i8042", e))?;
        pio.insert(KBD_STS_CTL_PORT, 1, kbd)
            .map_err(|e| bus_err("i8042", e))?;
        let mut serial = Vec::new();
        for (index, backend) in serial_backends {
            let Some(&(base, irq)) = COM_PORTS.get(index) else {
                continue;
            };
            let uart = Arc::new(Mutex::new(Uart::new(vm.irq_line(irq))));
            let name = format!("com{}", index + 1);
            pio.insert(base, UART_REG_COUNT, uart.clone())
                .map_err(|e| bus_err(&name, e))?;
            let handle = backend
                .attach(uart)
                .map_err(|e| MachineError::new(format!("{name}: {e}")))?;
            serial.push(handle);
        }
        if spec.pc_testdev {
            let irqs: Vec<Arc<dyn IrqLine>> =
                (0..IOAPIC_PINS as u32).map(|i| vm.irq_line(i)).collect();
            let dev =
                PcTestDev::new(control, irqs).map_err(|e| MachineError::new(e.to_string()))?;
            let ranges = dev.pio_ranges();
            let (mbase, mlen) = dev.mmio_range();
            let dev = Arc::new(Mutex::new(dev));
            for (base, len) in ranges {
                pio.insert(base, len, dev.clone())
                    .map_err(|e| bus_err("pc-testdev", e))?;
            }
            mmio.insert(mbase, mlen, dev)
                .map_err(|e| bus_err("pc-testdev", e))?;
        }
        Ok(Self { pio, mmio, serial })
    }

    /// Stops the serial backends (flushing what the guest wrote) and gives
    /// the terminal back.
    pub fn shutdown(&mut self) {
        // Dropping a handle flushes the guest's output and restores the
        // terminal.
        self.serial.clear();
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown();
    }
}
