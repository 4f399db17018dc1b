//! `-s N,uart[,backend]`: bhyve's PCI 16550 with the com ports' TTY
//! backends (`stdio`, a TTY path, `tcp=ip:port`), its `path` key.

use std::sync::{Arc, Mutex};

use bhyve_backends::{open_char_backend, BackendHandle};
use bhyve_config::Config;
use bhyve_devices::uart_pci::UartPci;
use bhyve_devices::CharFrontend;

use crate::MachineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UartPciSpec {
    /// None: output is dropped and nothing arrives, as bhyve.
    pub path: Option<String>,
}

pub fn uart_spec(cfg: &Config, node: &str) -> UartPciSpec {
    UartPciSpec {
        path: cfg.get(&format!("{node}.path")),
    }
}

/// Builds the function and attaches its backend; the handle keeps the
/// backend's thread running and must live as long as the VM.
pub fn uart_device(
    spec: &UartPciSpec,
    slot: u8,
    func: u8,
) -> Result<(Arc<Mutex<UartPci>>, Option<BackendHandle>), MachineError> {
    let dev = UartPci::new_shared().map_err(|e| MachineError::new(format!("uart: {e}")))?;
    let Some(path) = &spec.path else {
        return Ok((dev, None));
    };
    let fail = |e: &dyn std::fmt::Display| {
        MachineError::new(format!(
            "Unable to initialize backend '{path}' for pci uart at {slot}:{func}: {e}"
        ))
    };
    let front: Arc<dyn CharFrontend> = dev.clone();
    let handle = open_char_backend(path)
        .map_err(|e| fail(&e))?
        .attach(front)
        .map_err(|e| fail(&e))?;
    Ok((dev, Some(handle)))
}
