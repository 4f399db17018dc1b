//! `ahci`, `ahci-hd` and `ahci-cd` (bhyve's `pci_ahci_init`): the ports
//! of `pci.B.S.F.port.N` checked before the VM starts, then the HBA with
//! a block backend per port.
//!
//! Each port: `type` (`hd`, anything else is a CD as in bhyve), `path`
//! and the block-device-options, plus bhyve's IDENTIFY overrides `ser`,
//! `rev`, `model` and `nmrr` (nominal media rotation rate; 1 marks an
//! SSD).

use std::sync::{Arc, Mutex};

use bhyve_backends::block::Blockif;
use bhyve_config::Config;
use bhyve_devices::ahci::{default_serial, Ahci, Drive, Ident, MAX_PORTS};
use vm_memory::GuestMemoryMmap;

use crate::virtio::{block_spec, BlkSpec};
use crate::MachineError;

/// One configured port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AhciPortSpec {
    pub port: usize,
    pub atapi: bool,
    pub blk: BlkSpec,
    pub ident: Ident,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AhciSpec {
    pub ports: Vec<AhciPortSpec>,
}

/// The ports of the `ahci` node `node` (`ahci-hd`/`ahci-cd` configured
/// theirs as port 0).
pub fn ahci_spec(cfg: &Config, node: &str) -> Result<AhciSpec, MachineError> {
    let mut ports = Vec::new();
    for n in 0..MAX_PORTS {
        let pnode = format!("{node}.port.{n}");
        // bhyve skips ports without a type.
        let Some(kind) = cfg.get_in(&pnode, "type") else {
            continue;
        };
        let atapi = kind != "hd";
        let path = cfg
            .get_in(&pnode, "path")
            .ok_or_else(|| MachineError::new("Missing \"path\" for block device.".into()))?;
        let mut blk = block_spec(cfg, &pnode, path.clone())?;
        // bhyve names the backend "slot:func:port".
        blk.ident = node
            .strip_prefix("pci.")
            .map_or_else(|| n.to_string(), |s| format!("{s}.{n}"));
        let nmrr = match cfg.get_in(&pnode, "nmrr") {
            None => 0,
            Some(v) => v.trim().parse::<u16>().map_err(|_| {
                MachineError::new(format!(
                    "ahci port {n}: invalid nmrr \"{v}\" (0 to 65535; 1 is non-rotating)"
                ))
            })?,
        };
        let ident = Ident {
            serial: cfg
                .get_in(&pnode, "ser")
                .unwrap_or_else(|| default_serial(&path)),
            model: cfg.get_in(&pnode, "model").unwrap_or_else(|| {
                if atapi {
                    "BHYVE SATA DVD ROM".into()
                } else {
                    "BHYVE SATA DISK".into()
                }
            }),
            revision: cfg.get_in(&pnode, "rev").unwrap_or_else(|| "001".into()),
            nmrr,
        };
        ports.push(AhciPortSpec {
            port: n,
            atapi,
            blk,
            ident,
        });
    }
    Ok(AhciSpec { ports })
}

/// Opens every port's backing store and builds the HBA.
pub fn ahci_device(
    spec: &AhciSpec,
    mem: &GuestMemoryMmap,
) -> Result<Arc<Mutex<Ahci>>, MachineError> {
    let mut drives = Vec::new();
    for p in &spec.ports {
        let be = Blockif::open(&p.blk.opts, &p.blk.ident)
            .map_err(|e| MachineError::new(e.to_string()))?;
        drives.push((p.port, Drive::new(Arc::new(be), p.atapi, p.ident.clone())));
    }
    Ahci::new_shared(drives, mem.clone()).map_err(|e| MachineError::new(format!("ahci: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::config as cfg;

    #[test]
    fn ports_and_identify_overrides() {
        let c = cfg(&[
            ("pci.0.4.0.device", "ahci"),
            ("pci.0.4.0.port.0.type", "hd"),
            ("pci.0.4.0.port.0.path", "/tmp/a.img"),
            ("pci.0.4.0.port.0.ser", "S1"),
            ("pci.0.4.0.port.0.model", "M1"),
            ("pci.0.4.0.port.0.rev", "R1"),
            ("pci.0.4.0.port.0.nmrr", "1"),
            ("pci.0.4.0.port.0.ro", "true"),
            ("pci.0.4.0.port.3.type", "cd"),
            ("pci.0.4.0.port.3.path", "/tmp/b.iso"),
        ]);
        let s = ahci_spec(&c, "pci.0.4.0").unwrap();
        assert_eq!(s.ports.len(), 2);
        let (a, b) = (&s.ports[0], &s.ports[1]);
        assert_eq!((a.port, a.atapi), (0, false));
        assert_eq!(
            a.ident,
            Ident {
                serial: "S1".into(),
                model: "M1".into(),
                revision: "R1".into(),
                nmrr: 1
            }
        );
        assert!(a.blk.opts.read_only);
        assert_eq!(a.blk.ident, "0.4.0.0");
        assert_eq!((b.port, b.atapi), (3, true));
        assert_eq!(b.ident.model, "BHYVE SATA DVD ROM");
        assert_eq!(b.ident.revision, "001");
        assert_eq!(b.ident.serial, default_serial("/tmp/b.iso"));
        assert!(b.ident.serial.starts_with("BHYVE-"));
        assert_eq!(b.ident.serial.len(), 20);
    }

    #[test]
    fn bad_ports() {
        let e = ahci_spec(&cfg(&[("pci.0.4.0.port.0.type", "hd")]), "pci.0.4.0").unwrap_err();
        assert_eq!(e.to_string(), "Missing \"path\" for block device.");
        let e = ahci_spec(
            &cfg(&[
                ("pci.0.4.0.port.0.type", "hd"),
                ("pci.0.4.0.port.0.path", "/x"),
                ("pci.0.4.0.port.0.nmrr", "fast"),
            ]),
            "pci.0.4.0",
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid nmrr"), "{e}");
        let e = ahci_spec(
            &cfg(&[
                ("pci.0.4.0.port.0.type", "hd"),
                ("pci.0.4.0.port.0.path", "/x"),
                ("pci.0.4.0.port.0.sectorsize", "abc"),
            ]),
            "pci.0.4.0",
        )
        .unwrap_err();
        assert!(e.to_string().contains("Invalid sector size"), "{e}");
    }
}
