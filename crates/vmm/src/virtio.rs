//! virtio functions on KVM: which `-s` emulations are virtio devices,
//! their configuration checked before the VM starts, and doorbells as
//! KVM ioeventfds.

use std::sync::Arc;

use bhyve_backends::block::{default_serial, parse_sectorsize, BlockOptions, Blockif};
use bhyve_config::Config;
use bhyve_devices::pci::{DoorbellSpace, Doorbells};
use bhyve_devices::virtio::blk::VirtioBlk;
use bhyve_devices::virtio::console::{PortSpec, VirtioConsole, MAX_PORTS};
use bhyve_devices::virtio::input::{Evdev, VirtioInput};
use bhyve_devices::virtio::net::{default_mac, parse_mac, parse_mtu};
use bhyve_devices::virtio::p9::{VirtioP9, MAX_TAG};
use bhyve_devices::virtio::scsi::{ScsiLun, VirtioScsi};
use bhyve_devices::virtio::{VirtioDevice, VirtioNet, VirtioRnd};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::MachineError;

/// A virtio emulation and what its configuration said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioKind {
    Rnd,
    /// virtio-console's ports (`port.N.name`, `port.N.path`).
    Console(Vec<PortSpec>),
    /// virtio-input's evdev device (`path`).
    Input(String),
    /// virtio-blk: the backing store's options and GET_ID's serial.
    Blk(BlkSpec),
    /// virtio-scsi: LUN 0 of target 0 on this backing store (`dev`, the
    /// first positional option; Linux has no CAM Target Layer) and its
    /// VPD serial.
    Scsi(BlkSpec),
    /// virtio-9p: mount tag (`sharename`), host directory (`path`), `ro`.
    P9 {
        tag: String,
        path: String,
        ro: bool,
    },
    /// virtio-net: `backend` (none is allowed, as bhyve), the MAC (`mac=`
    /// or bhyve's default from slot, function and VM name), `mtu=`.
    Net {
        backend: Option<String>,
        mac: [u8; 6],
        mtu: Option<u16>,
    },
}

/// virtio-blk's keys: bhyve's block-device-options and `ser=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkSpec {
    pub opts: BlockOptions,
    /// `ser=` (or `serial=`), else bhyve's default from the path.
    pub serial: String,
    /// Names the backend's threads (`B.S.F`).
    pub ident: String,
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
        "virtio-console" => VirtioKind::Console(console_ports(cfg, node)?),
        "virtio-input" => VirtioKind::Input(cfg.get_in(node, "path").ok_or_else(|| {
            MachineError::new("virtio-input: missing required path config value".into())
        })?),
        "virtio-blk" => VirtioKind::Blk(blk_spec(cfg, node)?),
        "virtio-scsi" => VirtioKind::Scsi(scsi_spec(cfg, node)?),
        "virtio-9p" => p9_kind(cfg, node)?,
        "virtio-net" => net_kind(cfg, node)?,
        _ => return Ok(None),
    };
    let msix = cfg
        .get_bool_default("virtio_msix", true)
        .map_err(|e| MachineError::new(format!("virtio_msix: {e}")))?;
    let _ = node;
    Ok(Some(VirtioSpec { kind, msix }))
}

/// `(slot, function)` of a `pci.B.S.F` node.
fn slot_func(node: &str) -> (u8, u8) {
    let mut it = node.rsplit('.').map(|p| p.parse::<u8>().unwrap_or(0));
    let func = it.next().unwrap_or(0);
    (it.next().unwrap_or(0), func)
}

/// virtio-net's keys, checked as bhyve's `pci_vtnet_init` does.
fn net_kind(cfg: &Config, node: &str) -> Result<VirtioKind, MachineError> {
    let mac = match cfg.get(&format!("{node}.mac")) {
        Some(m) => parse_mac(&m).ok_or_else(|| MachineError::new(format!("Invalid MAC {m}")))?,
        None => {
            let (slot, func) = slot_func(node);
            default_mac(slot, func, &cfg.get("name").unwrap_or_default())
        }
    };
    let mtu = match cfg.get(&format!("{node}.mtu")) {
        Some(m) => Some(parse_mtu(&m).ok_or_else(|| {
            MachineError::new(format!("Invalid MTU {m} (bhyve takes 46 to 65535)"))
        })?),
        None => None,
    };
    Ok(VirtioKind::Net {
        backend: cfg.get(&format!("{node}.backend")),
        mac,
        mtu,
    })
}

/// virtio-9p's keys, checked as bhyve's `pci_vt9p_init` does (its
/// messages).
fn p9_kind(cfg: &Config, node: &str) -> Result<VirtioKind, MachineError> {
    let tag = cfg
        .get_in(node, "sharename")
        .ok_or_else(|| MachineError::new("virtio-9p: share name required".into()))?;
    if tag.len() > MAX_TAG {
        return Err(MachineError::new("virtio-9p: share name too long".into()));
    }
    let path = cfg
        .get_in(node, "path")
        .ok_or_else(|| MachineError::new("virtio-9p: path required".into()))?;
    let ro = cfg
        .get_bool_default(&format!("{node}.ro"), false)
        .map_err(|e| MachineError::new(format!("virtio-9p: ro: {e}")))?;
    Ok(VirtioKind::P9 { tag, path, ro })
}

/// virtio-blk's keys, checked as bhyve's `blockif_open` does (its
/// messages; every error is exit status 4).
fn blk_spec(cfg: &Config, node: &str) -> Result<BlkSpec, MachineError> {
    let path = cfg
        .get_in(node, "path")
        .ok_or_else(|| MachineError::new("Missing \"path\" for block device.".into()))?;
    block_spec(cfg, node, path)
}

/// virtio-scsi's `dev`: bhyve names a ctl(4) device there (default
/// `/dev/cam/ctl`); here it is the disk image or block device of LUN 0,
/// with virtio-blk's block-device-options (`ro`, `nocache`, `direct`,
/// `nodelete`, `sectorsize`, `ser`). bhyve 15's `target.N` is refused.
fn scsi_spec(cfg: &Config, node: &str) -> Result<BlkSpec, MachineError> {
    let dev = cfg
        .get_in(node, "dev")
        .or_else(|| cfg.get_in(node, "path"))
        .unwrap_or_else(|| "/dev/cam/ctl".into());
    if dev.starts_with("/dev/cam/ctl") {
        return Err(MachineError::new(format!(
            "virtio-scsi: {dev}: Linux has no CAM Target Layer; give a disk image or block \
             device instead (-s SLOT,virtio-scsi,/path/to/disk.img[,ro,ser=SERIAL])"
        )));
    }
    if cfg.root().node(&format!("{node}.target")).is_some() {
        return Err(MachineError::new(
            "virtio-scsi: target.N is not supported: one disk (LUN 0 of target 0) per controller"
                .into(),
        ));
    }
    block_spec(cfg, node, dev)
}

/// The block-device-options of `node` for the backing store `path`.
pub(crate) fn block_spec(cfg: &Config, node: &str, path: String) -> Result<BlkSpec, MachineError> {
    let flag = |k: &str| {
        cfg.get_bool_default(&format!("{node}.{k}"), false)
            .map_err(|e| MachineError::new(format!("{k}: {e}")))
    };
    let sector_size = match cfg.get_in(node, "sectorsize") {
        Some(s) => Some(parse_sectorsize(&s).map_err(|e| MachineError::new(e.to_string()))?),
        None => None,
    };
    let serial = cfg
        .get_in(node, "serial")
        .or_else(|| cfg.get_in(node, "ser"))
        .unwrap_or_else(|| default_serial(&path));
    Ok(BlkSpec {
        opts: BlockOptions {
            read_only: flag("ro")?,
            nocache: flag("nocache")?,
            sync: flag("sync")? || flag("direct")?,
            nodelete: flag("nodelete")?,
            sector_size,
            path,
        },
        serial,
        ident: node.strip_prefix("pci.").unwrap_or(node).to_owned(),
    })
}

/// virtio-console's `port` node: children named by port number (bhyve's
/// messages for bad ones).
fn console_ports(cfg: &Config, node: &str) -> Result<Vec<PortSpec>, MachineError> {
    let Some(ports) = cfg.root().node(&format!("{node}.port")) else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for n in ports.child_names() {
        let id = n
            .parse::<usize>()
            .ok()
            .filter(|&i| i < MAX_PORTS)
            .ok_or_else(|| MachineError::new(format!("vtcon: Invalid port {n}")))?;
        let get = |what: &str| {
            cfg.get_in(&format!("{node}.port.{n}"), what)
                .ok_or_else(|| {
                    MachineError::new(format!("vtcon: required {what} missing for port {id}"))
                })
        };
        v.push(PortSpec {
            id,
            path: get("path")?.into(),
            name: get("name")?,
        });
    }
    Ok(v)
}

/// Builds the device of `spec`.
pub fn virtio_device(spec: &VirtioSpec) -> Result<Box<dyn VirtioDevice>, MachineError> {
    Ok(match &spec.kind {
        VirtioKind::Rnd => {
            if !VirtioRnd::host_source_ok() {
                return Err(MachineError::new(
                    "virtio-rnd: the host's getrandom(2) does not work".into(),
                ));
            }
            Box::new(VirtioRnd::new())
        }
        VirtioKind::Console(ports) => {
            Box::new(VirtioConsole::new(ports).map_err(|e| MachineError::new(e.to_string()))?)
        }
        VirtioKind::Input(path) => {
            let dev = Evdev::open(path.as_ref()).map_err(|e| MachineError::new(e.to_string()))?;
            Box::new(VirtioInput::new(Arc::new(dev)))
        }
        VirtioKind::Blk(b) => {
            let be =
                Blockif::open(&b.opts, &b.ident).map_err(|e| MachineError::new(e.to_string()))?;
            Box::new(VirtioBlk::new(Arc::new(be), &b.serial))
        }
        VirtioKind::Scsi(b) => {
            let be =
                Blockif::open(&b.opts, &b.ident).map_err(|e| MachineError::new(e.to_string()))?;
            Box::new(VirtioScsi::new(vec![ScsiLun {
                lun: 0,
                backend: Arc::new(be),
                serial: b.serial.clone(),
            }]))
        }
        VirtioKind::P9 { tag, path, ro } => Box::new(
            VirtioP9::new(tag, path.as_ref(), *ro)
                .map_err(|e| MachineError::new(format!("virtio-9p: {e}")))?,
        ),
        VirtioKind::Net { backend, mac, mtu } => {
            let be = match backend {
                Some(b) => Some(
                    bhyve_backends::net::open_net_backend(b)
                        .map_err(|e| MachineError::new(format!("virtio-net: {e}")))?,
                ),
                None => None,
            };
            Box::new(VirtioNet::new(*mac, *mtu, be))
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
    fn p9_spec_from_configuration() {
        let mut c = Config::with_defaults();
        let spec = |c: &Config| virtio_spec(c, "pci.0.5.0", "virtio-9p");
        let msg = |c: &Config| spec(c).unwrap_err().to_string();
        assert_eq!(msg(&c), "virtio-9p: share name required");
        c.set("pci.0.5.0.sharename", "hostshare").unwrap();
        assert_eq!(msg(&c), "virtio-9p: path required");
        c.set("pci.0.5.0.path", "/nonexistent/share").unwrap();
        let s = spec(&c).unwrap().unwrap();
        let want = VirtioKind::P9 {
            tag: "hostshare".into(),
            path: "/nonexistent/share".into(),
            ro: false,
        };
        assert_eq!(s.kind, want);
        let e = virtio_device(&s).err().unwrap().to_string();
        assert_eq!(
            e,
            "virtio-9p: failed to open '/nonexistent/share': No such file or directory"
        );
        c.set("pci.0.5.0.ro", "true").unwrap();
        assert!(matches!(
            spec(&c).unwrap().unwrap().kind,
            VirtioKind::P9 { ro: true, .. }
        ));
        c.set("pci.0.5.0.ro", "perhaps").unwrap();
        assert!(spec(&c).is_err());
        c.set("pci.0.5.0.ro", "false").unwrap();
        c.set("pci.0.5.0.sharename", &"x".repeat(MAX_TAG + 1))
            .unwrap();
        assert_eq!(msg(&c), "virtio-9p: share name too long");
        // A real directory builds.
        c.set("pci.0.5.0.sharename", "s").unwrap();
        c.set("pci.0.5.0.path", "/").unwrap();
        assert!(virtio_device(&spec(&c).unwrap().unwrap()).is_ok());
    }

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
        // virtio-blk: bhyve's options, the default serial from the path.
        c.set("pci.0.5.0.path", "/images/disk.img").unwrap();
        c.set("pci.0.5.0.ro", "true").unwrap();
        c.set("pci.0.5.0.direct", "true").unwrap();
        c.set("pci.0.5.0.sectorsize", "512/4096").unwrap();
        let s = virtio_spec(&c, "pci.0.5.0", "virtio-blk").unwrap().unwrap();
        let VirtioKind::Blk(b) = s.kind else {
            panic!("{s:?}")
        };
        assert!(b.opts.read_only && b.opts.sync && !b.opts.nocache && !b.opts.nodelete);
        assert_eq!(b.opts.sector_size, Some((512, 4096)));
        assert_eq!(b.serial, "BHYVE-D5EC-1A86-9C8F");
        assert_eq!(b.ident, "0.5.0");
        c.set("pci.0.5.0.ser", "MYDISK").unwrap();
        c.set("pci.0.5.0.sectorsize", "4k").unwrap();
        let e = virtio_spec(&c, "pci.0.5.0", "virtio-blk").unwrap_err();
        assert_eq!(e.to_string(), "Invalid sector size \"4k\"");
        c.set("pci.0.5.0.sectorsize", "4096").unwrap();
        let s = virtio_spec(&c, "pci.0.5.0", "virtio-blk").unwrap().unwrap();
        assert!(matches!(s.kind, VirtioKind::Blk(ref b) if b.serial == "MYDISK"));
        // A path that does not open: one line, status 4.
        c.set("pci.0.5.0.path", "/nonexistent/disk.img").unwrap();
        let s = virtio_spec(&c, "pci.0.5.0", "virtio-blk").unwrap().unwrap();
        let e = virtio_device(&s).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("Could not open backing file: /nonexistent/disk.img"),
            "{e}"
        );
        assert!(
            virtio_spec(&c, "pci.0.6.0", "virtio-blk").is_err(),
            "no path"
        );
        // virtio-console: ports by number; bad numbers and missing
        // values are errors.
        c.set("pci.0.4.0.port.0.name", "port1").unwrap();
        c.set("pci.0.4.0.port.0.path", "/tmp/p1.sock").unwrap();
        c.set("pci.0.4.0.port.3.name", "org.x").unwrap();
        c.set("pci.0.4.0.port.3.path", "/tmp/p3.sock").unwrap();
        let s = virtio_spec(&c, "pci.0.4.0", "virtio-console")
            .unwrap()
            .unwrap();
        let VirtioKind::Console(p) = s.kind else {
            panic!("{s:?}")
        };
        assert_eq!((p[0].id, p[0].name.as_str()), (0, "port1"));
        assert_eq!((p[1].id, p[1].path.to_str()), (3, Some("/tmp/p3.sock")));
        assert_eq!(
            virtio_spec(&c, "pci.0.5.0", "virtio-console")
                .unwrap()
                .unwrap()
                .kind,
            VirtioKind::Console(vec![])
        );
        c.set("pci.0.4.0.port.16.name", "x").unwrap();
        let e = virtio_spec(&c, "pci.0.4.0", "virtio-console").unwrap_err();
        assert_eq!(e.to_string(), "vtcon: Invalid port 16");
        c.set("pci.0.6.0.port.2.name", "x").unwrap();
        let e = virtio_spec(&c, "pci.0.6.0", "virtio-console").unwrap_err();
        assert_eq!(e.to_string(), "vtcon: required path missing for port 2");
        // virtio-input: the path is required.
        assert!(virtio_spec(&c, "pci.0.7.0", "virtio-input").is_err());
        c.set("pci.0.7.0.path", "/dev/input/event3").unwrap();
        assert_eq!(
            virtio_spec(&c, "pci.0.7.0", "virtio-input")
                .unwrap()
                .unwrap()
                .kind,
            VirtioKind::Input("/dev/input/event3".into())
        );
        c.set("virtio_msix", "maybe").unwrap();
        assert!(virtio_spec(&c, "pci.0.3.0", "virtio-rnd").is_err());
    }

    fn net(c: &Config, node: &str) -> Result<VirtioKind, String> {
        virtio_spec(c, node, "virtio-net")
            .map(|s| s.unwrap().kind)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn virtio_net_keys() {
        let mut c = Config::with_defaults();
        c.set("name", "vm1").unwrap();
        c.set("pci.0.3.0.device", "virtio-net").unwrap();
        assert_eq!(
            net(&c, "pci.0.3.0").unwrap(),
            VirtioKind::Net {
                backend: None,
                mac: [0x58, 0x9c, 0xfc, 0xee, 0x08, 0x2b],
                mtu: None
            }
        );
        c.set("pci.0.3.0.backend", "tap0").unwrap();
        c.set("pci.0.3.0.mac", "00:be:fa:76:45:00").unwrap();
        c.set("pci.0.3.0.mtu", "9000").unwrap();
        assert_eq!(
            net(&c, "pci.0.3.0").unwrap(),
            VirtioKind::Net {
                backend: Some("tap0".into()),
                mac: [0, 0xbe, 0xfa, 0x76, 0x45, 0],
                mtu: Some(9000)
            }
        );
        c.set("pci.0.3.0.mtu", "45").unwrap();
        assert!(net(&c, "pci.0.3.0").unwrap_err().contains("Invalid MTU 45"));
        c.set("pci.0.3.0.mtu", "1500").unwrap();
        c.set("pci.0.3.0.mac", "01:00:5e:00:00:01").unwrap();
        assert!(net(&c, "pci.0.3.0")
            .unwrap_err()
            .contains("Invalid MAC 01:00:5e:00:00:01"));
        let VirtioKind::Net { mac, .. } = net(&c, "pci.0.2.1").unwrap() else {
            panic!()
        };
        assert_eq!(mac, default_mac(2, 1, "vm1"));
    }

    #[test]
    fn virtio_scsi_keys() {
        let mut c = Config::with_defaults();
        let spec = |c: &Config| virtio_spec(c, "pci.0.4.0", "virtio-scsi").map(|s| s.unwrap().kind);
        // bhyve's default and any ctl(4) path: one line naming the
        // Linux alternative.
        let e = spec(&c).unwrap_err().to_string();
        assert!(
            e.starts_with("virtio-scsi: /dev/cam/ctl: Linux has no CAM Target Layer"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        c.set("pci.0.4.0.dev", "/dev/cam/ctl1.2").unwrap();
        assert!(spec(&c)
            .unwrap_err()
            .to_string()
            .contains("/dev/cam/ctl1.2"));
        c.set("pci.0.4.0.dev", "/images/disk.img").unwrap();
        c.set("pci.0.4.0.ro", "true").unwrap();
        c.set("pci.0.4.0.ser", "SCSI0").unwrap();
        let VirtioKind::Scsi(b) = spec(&c).unwrap() else {
            panic!()
        };
        assert_eq!(b.opts.path, "/images/disk.img");
        assert!(b.opts.read_only);
        assert_eq!(b.serial, "SCSI0");
        c.set("pci.0.4.0.sectorsize", "4k").unwrap();
        assert!(spec(&c).is_err());
        // A disk that does not open.
        c.set("pci.0.4.0.sectorsize", "512").unwrap();
        let s = virtio_spec(&c, "pci.0.4.0", "virtio-scsi")
            .unwrap()
            .unwrap();
        let e = virtio_device(&s).err().unwrap().to_string();
        assert!(
            e.starts_with("Could not open backing file: /images/disk.img"),
            "{e}"
        );
        c.set("pci.0.4.0.target.1", "/images/other.img").unwrap();
        assert!(spec(&c).unwrap_err().to_string().contains("target.N"));
    }

    #[test]
    fn virtio_net_backend_errors_are_one_line() {
        let spec = |b: &str| VirtioSpec {
            kind: VirtioKind::Net {
                backend: Some(b.into()),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: None,
            },
            msix: true,
        };
        let e = virtio_device(&spec("netgraph")).err().unwrap().to_string();
        assert!(e.starts_with("virtio-net: netgraph(4) backend"), "{e}");
        assert!(!e.contains('\n'));
        assert!(virtio_device(&spec("bad/name")).is_err());
    }
}
