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

#[cfg(test)]
mod tests {
    use super::*;
    use bhyve_devices::pci::PciDevice;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// The PCI uart's bytes reach a `tcp=` client and the client's reach
    /// the guest side, through the same backend code com1–com4 use.
    #[test]
    fn tcp_backend_carries_bytes_both_ways() {
        let spec = UartPciSpec {
            path: Some("tcp=127.0.0.1:0".into()),
        };
        let (dev, handle) = uart_device(&spec, 4, 0).unwrap();
        let addr = handle.as_ref().unwrap().local_addr().unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The backend may attach the client after our first bytes: send
        // until they arrive.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        client.set_nonblocking(true).unwrap();
        while !got.ends_with(b"ok\n") {
            assert!(Instant::now() < deadline, "no output: {got:?}");
            for b in b"ok\n" {
                dev.lock().unwrap().bar_write(0, 0, &[*b]);
            }
            std::thread::sleep(Duration::from_millis(50));
            let mut b = [0u8; 64];
            if let Ok(n) = client.read(&mut b) {
                got.extend_from_slice(&b[..n]);
            }
        }
        client.write_all(b"z").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut lsr = [0u8];
            dev.lock().unwrap().bar_read(0, 5, &mut lsr);
            if lsr[0] & 1 != 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no input");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut rbr = [0u8];
        dev.lock().unwrap().bar_read(0, 0, &mut rbr);
        assert_eq!(rbr[0], b'z');
    }

    #[test]
    fn bad_backend_is_bhyves_message() {
        let spec = UartPciSpec {
            path: Some("tcp=nonsense".into()),
        };
        let e = uart_device(&spec, 4, 0).err().unwrap().to_string();
        assert!(
            e.starts_with("Unable to initialize backend 'tcp=nonsense' for pci uart at 4:0"),
            "{e}"
        );
    }
}
