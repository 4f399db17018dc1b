//! PCI device emulations known to `-s`, each with its legacy `conf` parser
//! (bhyve's `pe_legacy_config`): the part of `-s slot,emulation,conf` after
//! the emulation name becomes variables under the device's `pci.B.S.F`
//! node. Adding an emulation means adding one file and one table entry.

mod ahci;
mod block;
mod hostbridge;
mod net;
mod nvme;
mod passthru;
mod uart;
mod virtio_9p;
mod virtio_console;
mod virtio_input;
mod virtio_scsi;
mod xhci;

use crate::tree::Node;
use crate::ConfigError;

pub use block::blockif_legacy_config;
pub use net::netbe_legacy_config;

/// Fills a device node from the legacy `conf` text (`None` when `-s` had
/// no conf part).
pub type LegacyConfigFn = fn(&mut Node, Option<&str>) -> Result<(), ConfigError>;

/// One `-s` emulation.
#[derive(Debug)]
pub struct Emulation {
    /// Name accepted by `-s` and listed by `-s help`.
    pub name: &'static str,
    /// Emulation recorded as `device=` instead of `name` (bhyve's
    /// `pe_alias`: `ahci-hd` is an `ahci` with one disk).
    pub alias: Option<&'static str>,
    /// One line for documentation (bhyve's `-s help` prints names only).
    pub description: &'static str,
    pub legacy_config: LegacyConfigFn,
}

impl Emulation {
    /// The `device` value a `-s` with this emulation stores.
    pub fn device(&self) -> &'static str {
        self.alias.unwrap_or(self.name)
    }
}

const fn emu(
    name: &'static str,
    alias: Option<&'static str>,
    description: &'static str,
    legacy_config: LegacyConfigFn,
) -> Emulation {
    Emulation {
        name,
        alias,
        description,
        legacy_config,
    }
}

/// Every emulation, in the order bhyve's `-s help` lists them (the order of
/// its linker set: source files alphabetically, declarations in file
/// order).
pub static EMULATIONS: &[Emulation] = &[
    emu(
        "ahci",
        None,
        "AHCI controller attached to arbitrary devices",
        ahci::legacy_config,
    ),
    emu(
        "ahci-hd",
        Some("ahci"),
        "AHCI controller attached to a SATA hard drive",
        ahci::hd_legacy_config,
    ),
    emu(
        "ahci-cd",
        Some("ahci"),
        "AHCI controller attached to an ATAPI CD/DVD",
        ahci::cd_legacy_config,
    ),
    emu(
        "e1000",
        None,
        "Intel e82545 network interface",
        net::netbe_legacy_config,
    ),
    emu(
        "fbuf",
        None,
        "Raw framebuffer device attached to VNC server",
        pci_parse_legacy_config,
    ),
    emu(
        "hda",
        None,
        "High Definition Audio Controller",
        pci_parse_legacy_config,
    ),
    emu(
        "amd_hostbridge",
        Some("hostbridge"),
        "Host bridge with an AMD PCI vendor ID",
        hostbridge::amd_legacy_config,
    ),
    emu(
        "hostbridge",
        None,
        "A simple host bridge",
        pci_parse_legacy_config,
    ),
    emu(
        "lpc",
        None,
        "LPC PCI-ISA bridge with COM1-COM4, boot ROM and pc-testdev",
        pci_parse_legacy_config,
    ),
    emu(
        "nvme",
        None,
        "NVM Express (NVMe) controller",
        nvme::legacy_config,
    ),
    emu(
        "passthru",
        None,
        "PCI pass-through device",
        passthru::legacy_config,
    ),
    // Our extension (not in bhyve): QEMU's PIIX4 power-management
    // function, for firmware built for QEMU's i440FX (OVMF, SeaBIOS).
    emu(
        "piix4-pm",
        None,
        "PIIX4 ACPI power-management function (QEMU's i440FX 0:1.3; our extension)",
        pci_parse_legacy_config,
    ),
    emu("uart", None, "PCI 16550 serial device", uart::legacy_config),
    emu(
        "virtio-9p",
        None,
        "Virtio 9p (VirtFS) interface",
        virtio_9p::legacy_config,
    ),
    emu(
        "virtio-blk",
        None,
        "Virtio block storage interface",
        block::blockif_legacy_config,
    ),
    emu(
        "virtio-console",
        None,
        "Virtio console interface",
        virtio_console::legacy_config,
    ),
    emu(
        "virtio-input",
        None,
        "Virtio input interface",
        virtio_input::legacy_config,
    ),
    emu(
        "virtio-net",
        None,
        "Virtio network interface",
        net::netbe_legacy_config,
    ),
    emu(
        "virtio-rnd",
        None,
        "Virtio RNG interface",
        pci_parse_legacy_config,
    ),
    emu(
        "virtio-scsi",
        None,
        "Virtio SCSI interface",
        virtio_scsi::legacy_config,
    ),
    emu(
        "xhci",
        None,
        "eXtensible Host Controller Interface (xHCI) USB controller",
        xhci::legacy_config,
    ),
];

/// The emulation called `name` (exact, case-sensitive, as bhyve).
pub fn find_emulation(name: &str) -> Option<&'static Emulation> {
    EMULATIONS.iter().find(|e| e.name == name)
}

/// bhyve's generic legacy parser: comma-separated `name[=value]` items;
/// an item without `=` is a boolean set to `true`.
pub fn pci_parse_legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    for item in opt.split(',') {
        match item.split_once('=') {
            Some((name, value)) => node.set_value(name, value)?,
            None => node.set_value(item, "true")?,
        }
    }
    Ok(())
}

/// Splits `conf` at its first comma: the leading positional value and the
/// `name=value` options after it (the shape of most legacy parsers).
pub(crate) fn split_first(opt: &str) -> (&str, Option<&str>) {
    match opt.split_once(',') {
        Some((first, rest)) => (first, Some(rest)),
        None => (opt, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(emulation: &str, conf: Option<&str>) -> Result<String, ConfigError> {
        let e = find_emulation(emulation).expect("known emulation");
        let mut node = Node::new();
        node.set_value("device", e.device())?;
        (e.legacy_config)(&mut node, conf)?;
        let mut cfg = crate::Config::new();
        *cfg.root_mut().create_node("d")? = node;
        Ok(cfg.dump().replace("d.", ""))
    }

    #[test]
    fn table_is_consistent() {
        let man_page = [
            "hostbridge",
            "amd_hostbridge",
            "passthru",
            "virtio-net",
            "virtio-blk",
            "virtio-scsi",
            "virtio-9p",
            "virtio-rnd",
            "virtio-console",
            "virtio-input",
            "ahci",
            "ahci-cd",
            "ahci-hd",
            "e1000",
            "uart",
            "lpc",
            "fbuf",
            "xhci",
            "nvme",
            "hda",
        ];
        // Our extensions, not in bhyve(8).
        let ours = ["piix4-pm"];
        assert_eq!(EMULATIONS.len(), man_page.len() + ours.len());
        for name in ours {
            assert!(find_emulation(name).is_some(), "{name}");
        }
        for name in man_page {
            assert!(find_emulation(name).is_some(), "{name}");
        }
        assert!(find_emulation("virtio-foo").is_none());
        assert!(find_emulation("AHCI").is_none());
    }

    #[test]
    fn generic_parser() {
        assert_eq!(parse("virtio-rnd", None).unwrap(), "device=virtio-rnd\n");
        assert_eq!(
            parse("fbuf", Some("tcp=0.0.0.0:5900,w=800,h=600,wait")).unwrap(),
            "device=fbuf\ntcp=0.0.0.0:5900\nw=800\nh=600\nwait=true\n"
        );
        assert_eq!(
            parse("hda", Some("play=/dev/dsp0,rec=/dev/dsp0")).unwrap(),
            "device=hda\nplay=/dev/dsp0\nrec=/dev/dsp0\n"
        );
        // Empty items become empty-named booleans, repeated names move last.
        assert_eq!(
            parse("fbuf", Some("w=1,,w=2")).unwrap(),
            "device=fbuf\n=true\nw=2\n"
        );
        assert_eq!(parse("fbuf", Some("a.b=1")).unwrap_err().exit_code(), 4);
    }

    #[test]
    fn hostbridges() {
        assert_eq!(parse("hostbridge", None).unwrap(), "device=hostbridge\n");
        assert_eq!(
            parse("amd_hostbridge", Some("ignored")).unwrap(),
            "device=hostbridge\nvendor=0x1022\ndevid=0x7432\n"
        );
    }

    #[test]
    fn block_and_net() {
        assert_eq!(
            parse("virtio-blk", Some("/img,ro,sectorsize=512/4096")).unwrap(),
            "device=virtio-blk\npath=/img\nro=true\nsectorsize=512/4096\n"
        );
        assert_eq!(
            parse("virtio-net", Some("tap2,mac=00:be:fa:76:45:00")).unwrap(),
            "device=virtio-net\nbackend=tap2\nmac=00:be:fa:76:45:00\n"
        );
        assert_eq!(
            parse("virtio-net", Some("netgraph,path=sock:,peerhook=link0")).unwrap(),
            "device=virtio-net\nbackend=netgraph\npath=sock:\npeerhook=link0\n"
        );
        assert_eq!(
            parse("e1000", Some("tap0")).unwrap(),
            "device=e1000\nbackend=tap0\n"
        );
        assert_eq!(parse("e1000", None).unwrap(), "device=e1000\n");
    }

    #[test]
    fn ahci_ports() {
        assert_eq!(
            parse("ahci", Some("hd:/a,cd:/b.iso,hd:/c,nmrr=1,ser=X")).unwrap(),
            "device=ahci\nport.0.type=hd\nport.0.path=/a\nport.1.type=cd\nport.1.path=/b.iso\n\
             port.2.type=hd\nport.2.path=/c\nport.2.nmrr=1\nport.2.ser=X\n"
        );
        assert_eq!(
            parse("ahci-hd", Some("disk.img")).unwrap(),
            "device=ahci\nport.0.type=hd\nport.0.path=disk.img\n"
        );
        assert_eq!(
            parse("ahci-cd", Some("/x.iso,ro")).unwrap(),
            "device=ahci\nport.0.type=cd\nport.0.path=/x.iso\nport.0.ro=true\n"
        );
        assert_eq!(
            parse("ahci-hd", None).unwrap(),
            "device=ahci\nport.0.type=hd\n"
        );
        let e = parse("ahci", Some("/no/type")).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            e.to_string(),
            "Missing or invalid type for port 0: \"/no/type\""
        );
    }

    #[test]
    fn nvme_forms() {
        assert_eq!(
            parse("nvme", Some("ram=1024,ser=abc")).unwrap(),
            "device=nvme\nram=1024\nser=abc\n"
        );
        assert_eq!(
            parse("nvme", Some("ram=64")).unwrap(),
            "device=nvme\nram=64\n"
        );
        assert_eq!(
            parse("nvme", Some("/dev/zvol/x,maxq=4")).unwrap(),
            "device=nvme\npath=/dev/zvol/x\nmaxq=4\n"
        );
    }

    #[test]
    fn passthru_forms() {
        for conf in ["2/0/0", "pci2:0:0", "pci0:2:0:0"] {
            assert_eq!(
                parse("passthru", Some(conf)).unwrap(),
                "device=passthru\nbus=2\nslot=0\nfunc=0\n",
                "{conf}"
            );
        }
        assert_eq!(
            parse("passthru", Some("ppt0,rom=/x.rom")).unwrap(),
            "device=passthru\npptdev=ppt0\nrom=/x.rom\n"
        );
        let e = parse("passthru", Some("garbage")).unwrap_err();
        assert_eq!(e.to_string(), "passthru: invalid options \"garbage\"");
    }

    #[test]
    fn virtio_misc() {
        assert_eq!(
            parse("virtio-scsi", Some("/dev/cam/ctl1.1,iid=3")).unwrap(),
            "device=virtio-scsi\ndev=/dev/cam/ctl1.1\niid=3\n"
        );
        assert_eq!(
            parse("virtio-9p", Some("share=/tmp/x,ro")).unwrap(),
            "device=virtio-9p\nsharename=share\npath=/tmp/x\nro=true\n"
        );
        assert_eq!(
            parse("virtio-9p", Some("a=/x,b=/y"))
                .unwrap_err()
                .to_string(),
            "virtio-9p: more than one share name given"
        );
        assert_eq!(
            parse("virtio-console", Some("port1=/tmp/p1.sock,com.x=/tmp/p2")).unwrap(),
            "device=virtio-console\nport.0.name=port1\nport.0.path=/tmp/p1.sock\n\
             port.1.name=com.x\nport.1.path=/tmp/p2\n"
        );
        assert_eq!(
            parse("virtio-console", Some("nopath"))
                .unwrap_err()
                .to_string(),
            "vtcon: port nopath requires a path"
        );
        let many: Vec<String> = (0..17).map(|i| format!("p{i}=/s{i}")).collect();
        assert_eq!(
            parse("virtio-console", Some(&many.join(",")))
                .unwrap_err()
                .to_string(),
            "vtcon: too many ports"
        );
        assert_eq!(
            parse("virtio-input", Some("/dev/input/event0")).unwrap(),
            "device=virtio-input\npath=/dev/input/event0\n"
        );
        assert_eq!(parse("virtio-input", None).unwrap_err().exit_code(), 4);
        assert_eq!(
            parse("uart", Some("stdio")).unwrap(),
            "device=uart\npath=stdio\n"
        );
        assert_eq!(parse("uart", None).unwrap(), "device=uart\n");
    }

    #[test]
    fn xhci_slots() {
        assert_eq!(
            parse("xhci", Some("tablet")).unwrap(),
            "device=xhci\nslot.1.device=tablet\n"
        );
        assert_eq!(
            parse("xhci", Some("tablet,kbd=x=1")).unwrap(),
            "device=xhci\nslot.1.device=tablet\nslot.2.device=kbd\nslot.2.x=1\n"
        );
    }
}
