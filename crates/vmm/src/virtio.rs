//! virtio functions on KVM: which `-s` emulations are virtio devices,
//! their configuration checked before the VM starts, and doorbells as
//! KVM ioeventfds.

use std::sync::Arc;

use bhyve_config::Config;
use bhyve_devices::pci::{DoorbellSpace, Doorbells};
use bhyve_devices::virtio::{VirtioDevice, VirtioRnd};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::MachineError;

/// A virtio emulation and what its configuration said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioKind {
    Rnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioSpec {
    pub kind: VirtioKind,
    /// `virtio_msix` (`-W` turns it off): MSI-X, else one MSI vector.
    pub msix: bool,
}

/// The virtio spec for emulation `device` of node `node`; `Ok(None)` when
/// `device` is not a virtio emulation this build has.
pub fn virtio_spec(
    cfg: &Config,
    node: &str,
    device: &str,
) -> Result<Option<VirtioSpec>, MachineError> {
    let kind = match device {
        "virtio-rnd" => VirtioKind::Rnd,
        _ => return Ok(None),
    };
    let msix = cfg
        .get_bool_default("virtio_msix", true)
        .map_err(|e| MachineError::new(format!("virtio_msix: {e}")))?;
    let _ = node;
    Ok(Some(VirtioSpec { kind, msix }))
}

/// Builds the device of `spec`.
pub fn virtio_device(spec: &VirtioSpec) -> Result<Box<dyn VirtioDevice>, MachineError> {
    Ok(match spec.kind {
        VirtioKind::Rnd => {
            if !VirtioRnd::host_source_ok() {
                return Err(MachineError::new(
                    "virtio-rnd: the host's getrandom(2) does not work".into(),
                ));
            }
            Box::new(VirtioRnd::new())
        }
    })
}

/// Doorbells as KVM ioeventfds.
pub struct KvmDoorbells(pub Arc<VmFd>);

fn io_err(e: kvm_ioctls::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.errno())
}

impl KvmDoorbells {
    fn call(
        &self,
        register: bool,
        space: DoorbellSpace,
        addr: u64,
        len: u8,
        datamatch: Option<u64>,
        evt: &EventFd,
    ) -> std::io::Result<()> {
        let a = match space {
            DoorbellSpace::Pio => IoEventAddress::Pio(addr),
            DoorbellSpace::Mmio => IoEventAddress::Mmio(addr),
        };
        // kvm-ioctls takes the access length from the datamatch type.
        macro_rules! go {
            ($dm:expr) => {
                if register {
                    self.0.register_ioevent(evt, &a, $dm).map_err(io_err)
                } else {
                    self.0.unregister_ioevent(evt, &a, $dm).map_err(io_err)
                }
            };
        }
        match (len, datamatch) {
            (0, None) => go!(NoDatamatch),
            (1, Some(v)) => go!(v as u8),
            (2, Some(v)) => go!(v as u16),
            (4, Some(v)) => go!(v as u32),
            (8, Some(v)) => go!(v),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("doorbell of {len} bytes with datamatch {datamatch:?}"),
            )),
        }
    }
}

impl Doorbells for KvmDoorbells {
    fn register(
        &self,
        space: DoorbellSpace,
        addr: u64,
        len: u8,
        datamatch: Option<u64>,
        evt: &EventFd,
    ) -> std::io::Result<()> {
        self.call(true, space, addr, len, datamatch, evt)
    }

    fn unregister(
        &self,
        space: DoorbellSpace,
        addr: u64,
        len: u8,
        datamatch: Option<u64>,
        evt: &EventFd,
    ) -> std::io::Result<()> {
        self.call(false, space, addr, len, datamatch, evt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_from_configuration() {
        let mut c = Config::with_defaults();
        c.set("pci.0.3.0.device", "virtio-rnd").unwrap();
        let s = virtio_spec(&c, "pci.0.3.0", "virtio-rnd").unwrap().unwrap();
        assert_eq!(
            s,
            VirtioSpec {
                kind: VirtioKind::Rnd,
                msix: true
            }
        );
        c.set("virtio_msix", "false").unwrap();
        assert!(
            !virtio_spec(&c, "pci.0.3.0", "virtio-rnd")
                .unwrap()
                .unwrap()
                .msix
        );
        assert_eq!(virtio_spec(&c, "pci.0.3.0", "hostbridge").unwrap(), None);
        c.set("virtio_msix", "maybe").unwrap();
        assert!(virtio_spec(&c, "pci.0.3.0", "virtio-rnd").is_err());
    }
}
