//! `-s N,e1000,backend[,mac=xx:xx:xx:xx:xx:xx]`: bhyve's 82545EM
//! (`pci_e82545`) on the tap backend virtio-net uses. Keys as
//! `netbe_legacy_config` left them: `backend`, `mac` (`mtu` is
//! virtio-net's; bhyve's e1000 ignores it, and so does this one).

use std::sync::{Arc, Mutex};

use bhyve_config::Config;
use bhyve_devices::e1000::E1000;
use bhyve_devices::virtio::net::{default_mac, parse_mac};
use vm_memory::GuestMemoryMmap;

use crate::MachineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E1000Spec {
    /// None: the device sends nowhere and receives nothing (bhyve allows
    /// an e1000 without a backend).
    pub backend: Option<String>,
    pub mac: [u8; 6],
}

/// `(slot, function)` of a `pci.B.S.F` node.
fn slot_func(node: &str) -> (u8, u8) {
    let mut it = node.rsplit('.').map(|p| p.parse::<u8>().unwrap_or(0));
    let func = it.next().unwrap_or(0);
    (it.next().unwrap_or(0), func)
}

/// The e1000 of node `node`, checked as bhyve's `e82545_init` does.
pub fn e1000_spec(cfg: &Config, node: &str) -> Result<E1000Spec, MachineError> {
    let mac = match cfg.get(&format!("{node}.mac")) {
        Some(m) => parse_mac(&m).ok_or_else(|| MachineError::new(format!("Invalid MAC {m}")))?,
        None => {
            let (slot, func) = slot_func(node);
            default_mac(slot, func, &cfg.get("name").unwrap_or_default())
        }
    };
    Ok(E1000Spec {
        backend: cfg.get(&format!("{node}.backend")),
        mac,
    })
}

/// Opens the backend and builds the function (its workers running).
pub fn e1000_device(
    spec: &E1000Spec,
    mem: &GuestMemoryMmap,
) -> Result<Arc<Mutex<E1000>>, MachineError> {
    let backend = match &spec.backend {
        Some(b) => Some(
            bhyve_backends::net::open_net_backend(b)
                .map_err(|e| MachineError::new(format!("e1000: {e}")))?,
        ),
        None => None,
    };
    E1000::new_shared(spec.mac, backend, mem.clone())
        .map_err(|e| MachineError::new(format!("e1000: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::config as cfg;

    #[test]
    fn mac_and_backend() {
        let c = cfg(&[
            ("name", "vm0"),
            ("pci.0.3.0.device", "e1000"),
            ("pci.0.3.0.backend", "tap7"),
        ]);
        let s = e1000_spec(&c, "pci.0.3.0").unwrap();
        assert_eq!(s.backend.as_deref(), Some("tap7"));
        assert_eq!(s.mac, default_mac(3, 0, "vm0"));
        let c = cfg(&[("pci.0.3.0.mac", "02:00:00:00:00:01")]);
        assert_eq!(e1000_spec(&c, "pci.0.3.0").unwrap().mac, [2, 0, 0, 0, 0, 1]);
        let c = cfg(&[("pci.0.3.0.mac", "01:00:00:00:00:01")]);
        assert_eq!(
            e1000_spec(&c, "pci.0.3.0").unwrap_err().to_string(),
            "Invalid MAC 01:00:00:00:00:01"
        );
    }
}
