//! `-s slot,emulation[,conf]` (bhyve's `pci_parse_slot`) and `-s help`.

use crate::cnum::scanf_ints;
use crate::emulations::{find_emulation, EMULATIONS};
use crate::{Config, ConfigError};

/// PCI buses, slots per bus and functions per slot.
pub const MAXBUSES: i32 = 256;
pub const MAXSLOTS: i32 = 32;
pub const MAXFUNCS: i32 = 8;

/// Where a device sits on the guest's PCI buses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    pub bus: u8,
    pub slot: u8,
    pub func: u8,
}

impl PciAddr {
    /// The device's configuration node, `pci.B.S.F`.
    pub fn node_path(&self) -> String {
        format!("pci.{}.{}.{}", self.bus, self.slot, self.func)
    }
}

impl std::fmt::Display for PciAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.bus, self.slot, self.func)
    }
}

/// Parses the slot part: `bus:slot:func`, `slot:func` or `slot`, read the
/// way bhyve's `sscanf` calls read them (trailing text is ignored).
fn parse_slot_field(s: &str) -> Option<PciAddr> {
    let (bus, slot, func) = match scanf_ints(s, "%d:%d:%d")[..] {
        [b, s, f] => (b, s, f),
        _ => match scanf_ints(s, "%d:%d")[..] {
            [s, f] => (0, s, f),
            _ => match scanf_ints(s, "%d")[..] {
                [s] => (0, s, 0),
                _ => return None,
            },
        },
    };
    if !(0..MAXBUSES).contains(&bus)
        || !(0..MAXSLOTS).contains(&slot)
        || !(0..MAXFUNCS).contains(&func)
    {
        return None;
    }
    Some(PciAddr {
        bus: bus as u8,
        slot: slot as u8,
        func: func as u8,
    })
}

/// Applies one `-s` argument: creates `pci.B.S.F` with `device=` and the
/// emulation's own variables. Every error exits with 4, as in bhyve.
pub fn pci_parse_slot(cfg: &mut Config, opt: &str) -> Result<PciAddr, ConfigError> {
    let bad_field = || ConfigError::Invalid(format!("Invalid PCI slot info field \"{opt}\""));
    let Some((slot_field, rest)) = opt.split_once(',') else {
        return Err(bad_field());
    };
    let (emul, conf) = match rest.split_once(',') {
        Some((e, c)) => (e, Some(c)),
        None => (rest, None),
    };
    let addr = parse_slot_field(slot_field).ok_or_else(bad_field)?;
    let emulation = find_emulation(emul).ok_or_else(|| {
        ConfigError::Invalid(format!("pci slot {addr}: unknown device \"{emul}\""))
    })?;
    let path = addr.node_path();
    if cfg.root().node(&path).is_some() {
        return Err(ConfigError::Invalid(format!(
            "pci slot {addr} already occupied!"
        )));
    }
    let node = cfg.root_mut().create_node(&path)?;
    node.set_value("device", emulation.device())?;
    (emulation.legacy_config)(node, conf)?;
    Ok(addr)
}

/// What `-s help` prints: one emulation name per line.
pub fn pci_help_text() -> String {
    EMULATIONS.iter().map(|e| format!("{}\n", e.name)).collect()
}

/// The configured PCI functions in tree order with their `device`.
pub fn pci_devices(cfg: &Config) -> Vec<(PciAddr, String)> {
    let mut out = Vec::new();
    let Some(pci) = cfg.root().child("pci") else {
        return out;
    };
    let num = |s: &str, max: i32| s.parse::<i32>().ok().filter(|n| (0..max).contains(n));
    for b in pci.child_names() {
        let Some(bus) = num(b, MAXBUSES) else {
            continue;
        };
        let bus_node = pci.child(b).expect("child exists");
        for s in bus_node.child_names() {
            let Some(slot) = num(s, MAXSLOTS) else {
                continue;
            };
            let slot_node = bus_node.child(s).expect("child exists");
            for f in slot_node.child_names() {
                let Some(func) = num(f, MAXFUNCS) else {
                    continue;
                };
                let path = format!("pci.{b}.{s}.{f}.device");
                if let Some(device) = cfg.get(&path) {
                    let addr = PciAddr {
                        bus: bus as u8,
                        slot: slot as u8,
                        func: func as u8,
                    };
                    out.push((addr, device));
                }
            }
        }
    }
    out
}

/// The LPC bridge rules bhyve enforces when it creates the bridge: at most
/// one, and only on bus 0. They are checked at device setup, after
/// `config.dump`, so they are not part of [`pci_parse_slot`].
pub fn check_lpc_bridges(cfg: &Config) -> Result<(), ConfigError> {
    let mut seen = false;
    for (addr, device) in pci_devices(cfg) {
        if device != "lpc" {
            continue;
        }
        if seen {
            return Err(ConfigError::Invalid(
                "Only one LPC bridge is allowed.".into(),
            ));
        }
        if addr.bus != 0 {
            return Err(ConfigError::Invalid(
                "LPC bridge can be present only on bus 0.".into(),
            ));
        }
        seen = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(cfg: &mut Config, s: &str) -> Result<PciAddr, ConfigError> {
        pci_parse_slot(cfg, s)
    }

    fn a(bus: u8, slot: u8, func: u8) -> PciAddr {
        PciAddr { bus, slot, func }
    }

    #[test]
    fn slot_forms() {
        let mut cfg = Config::new();
        assert_eq!(slot(&mut cfg, "3,virtio-rnd").unwrap(), a(0, 3, 0));
        assert_eq!(slot(&mut cfg, "3:1,virtio-rnd").unwrap(), a(0, 3, 1));
        assert_eq!(slot(&mut cfg, "2:3:1,virtio-rnd").unwrap(), a(2, 3, 1));
        assert_eq!(
            slot(&mut cfg, "255:31:7,virtio-rnd").unwrap(),
            a(255, 31, 7)
        );
        // sscanf ignores what follows the numbers.
        assert_eq!(slot(&mut cfg, "4x,virtio-rnd").unwrap(), a(0, 4, 0));
        assert_eq!(
            cfg.dump(),
            "pci.0.3.0.device=virtio-rnd\npci.0.3.1.device=virtio-rnd\npci.0.4.0.device=virtio-rnd\n\
             pci.2.3.1.device=virtio-rnd\npci.255.31.7.device=virtio-rnd\n"
        );
    }

    #[test]
    fn slot_errors() {
        let mut cfg = Config::new();
        for bad in [
            "32,hostbridge",
            "0:8,hostbridge",
            "256:0:0,hostbridge",
            "-1,hostbridge",
            "x,hostbridge",
            ",hostbridge",
            "3",
            "1:2:3:",
        ] {
            let e = slot(&mut cfg, bad).unwrap_err();
            assert_eq!(e.exit_code(), 4, "{bad}");
            assert_eq!(
                e.to_string(),
                format!("Invalid PCI slot info field \"{bad}\"")
            );
        }
        let e = slot(&mut cfg, "3,virtio-foo,x").unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (4, "pci slot 0:3:0: unknown device \"virtio-foo\"".into())
        );
        assert_eq!(
            slot(&mut cfg, "3,").unwrap_err().to_string(),
            "pci slot 0:3:0: unknown device \"\""
        );
        slot(&mut cfg, "1,lpc").unwrap();
        let e = slot(&mut cfg, "1:0,ahci,hd:/x").unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (4, "pci slot 0:1:0 already occupied!".into())
        );
        // A node made with -o occupies the slot too.
        cfg.set("pci.0.5.0.foo", "1").unwrap();
        assert!(slot(&mut cfg, "5,hostbridge").is_err());
    }

    #[test]
    fn help_lists_every_emulation() {
        let text = pci_help_text();
        assert!(text.starts_with("ahci\nahci-hd\nahci-cd\ne1000\n"));
        assert!(text.ends_with("virtio-scsi\nxhci\n"));
        // bhyve's 20 and our piix4-pm.
        assert_eq!(text.lines().count(), 21);
        assert!(text.contains("\npiix4-pm\n"));
    }

    #[test]
    fn lpc_rules() {
        let mut cfg = Config::new();
        slot(&mut cfg, "1:0:0,lpc").unwrap();
        assert_eq!(
            check_lpc_bridges(&cfg).unwrap_err().to_string(),
            "LPC bridge can be present only on bus 0."
        );
        let mut cfg = Config::new();
        slot(&mut cfg, "1,lpc").unwrap();
        assert!(check_lpc_bridges(&cfg).is_ok());
        slot(&mut cfg, "31,lpc").unwrap();
        assert_eq!(
            check_lpc_bridges(&cfg).unwrap_err().to_string(),
            "Only one LPC bridge is allowed."
        );
    }
}
