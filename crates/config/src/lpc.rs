//! `-l lpcdev[,conf]` (bhyve's `lpc_device_parse`) and `-l help`.
//!
//! `lpc.fwcfg` (default `bhyve`) picks the firmware interface: bhyve sets
//! it through `-l bootrom,romfile[,varfile],fwcfg=qemu` or `-o
//! lpc.fwcfg=qemu`; there is no `-l fwcfg` device. `-l debugcon` is our
//! extension (QEMU's isa-debugcon, where SeaBIOS and OVMF log).

use crate::cnum::strtoul;
use crate::emulations::pci_parse_legacy_config;
use crate::{Config, ConfigError};

/// The 16550 UARTs behind the LPC bridge.
pub const LPC_UART_NAMES: [&str; 4] = ["com1", "com2", "com3", "com4"];
/// Name of the debug/test device (`pctestdev_getname`).
pub const PCTESTDEV_NAME: &str = "pc-testdev";
/// QEMU's debug console port (not in bhyve).
pub const DEBUGCON_NAME: &str = "debugcon";
/// Its default port, where SeaBIOS and OVMF log.
pub const DEBUGCON_DEFAULT_PORT: u16 = 0x402;
/// `lpc.debugcon.path` value that sends the output to bhyve's stderr.
pub const DEBUGCON_STDERR: &str = "stderr";

/// Applies one `-l` argument. Device names match case-insensitively.
/// `comN[,backend]` sets `lpc.comN.path`; `bootrom,romfile[,varfile]
/// [,name=value...]` sets `lpc.bootrom`, `lpc.bootvars` and options such
/// as `fwcfg=qemu` under `lpc`; `tpm,type,path[,opts]` fills `tpm`;
/// `pc-testdev` sets `lpc.pc-testdev=true`; `debugcon,path[,port=N]`
/// sets `lpc.debugcon.path` and `lpc.debugcon.port` (default 0x402).
pub fn lpc_device_parse(cfg: &mut Config, opts: &str) -> Result<(), ConfigError> {
    let invalid = || ConfigError::Usage(format!("invalid lpc device configuration '{opts}'"));
    let mut items = opts.splitn(2, ',');
    let lpcdev = items.next().unwrap_or("");
    let rest = items.next();

    if lpcdev.eq_ignore_ascii_case("bootrom") {
        let Some(rest) = rest else {
            return Err(ConfigError::Invalid(format!(
                "invalid bootrom option \"{opts}\""
            )));
        };
        let (romfile, rest) = split(rest);
        cfg.set("lpc.bootrom", romfile)?;
        let Some(rest) = rest else {
            return Ok(());
        };
        let (varfile, rest) = split(rest);
        let lpc = cfg.root_mut().create_node("lpc")?;
        if varfile.contains('=') {
            // No varfile: the first item is already an option.
            pci_parse_legacy_config(lpc, Some(varfile))?;
        } else {
            lpc.set_value("bootvars", varfile)?;
        }
        return pci_parse_legacy_config(lpc, rest);
    }
    if lpcdev.eq_ignore_ascii_case("tpm") {
        cfg.root_mut().create_node("tpm")?;
        let Some(rest) = rest else {
            return Err(ConfigError::Invalid(format!("invalid tpm type \"{opts}\"")));
        };
        let (kind, rest) = split(rest);
        let tpm = cfg.root_mut().create_node("tpm")?;
        tpm.set_value("type", kind)?;
        let Some(rest) = rest else {
            return Err(ConfigError::Invalid(format!("invalid tpm path \"{opts}\"")));
        };
        let (path, rest) = split(rest);
        tpm.set_value("path", path)?;
        pci_parse_legacy_config(tpm, rest)?;
        return tpm.set_value_if_unset("version", "2.0");
    }
    if let Some(name) = LPC_UART_NAMES
        .iter()
        .find(|n| lpcdev.eq_ignore_ascii_case(n))
    {
        match rest {
            Some(backend) => cfg.set(&format!("lpc.{name}.path"), backend)?,
            // bhyve hands a NULL value to nvlist, which records nothing
            // but leaves the port's node behind.
            None => {
                cfg.root_mut().create_node(&format!("lpc.{name}"))?;
            }
        }
        return Ok(());
    }
    if lpcdev.eq_ignore_ascii_case(PCTESTDEV_NAME) {
        return cfg.set_bool(&format!("lpc.{PCTESTDEV_NAME}"), true);
    }
    // `-l fwcfg,qemu|bhyve`: the same variable `fwcfg=` sets after a
    // bootrom (newer bhyve spells it this way too).
    if lpcdev.eq_ignore_ascii_case("fwcfg") {
        return match rest {
            Some(v @ ("qemu" | "bhyve")) => cfg.set("lpc.fwcfg", v),
            _ => Err(invalid()),
        };
    }
    if lpcdev.eq_ignore_ascii_case(DEBUGCON_NAME) {
        let (path, mut rest) = split(rest.ok_or_else(invalid)?);
        if path.is_empty() || path.contains('=') {
            return Err(invalid());
        }
        let mut port = format!("{DEBUGCON_DEFAULT_PORT:#x}");
        while let Some(r) = rest {
            let (item, next) = split(r);
            let value = item.strip_prefix("port=").ok_or_else(invalid)?;
            parse_port(value).ok_or_else(invalid)?;
            port = value.to_string();
            rest = next;
        }
        cfg.set(&format!("lpc.{DEBUGCON_NAME}.path"), path)?;
        return cfg.set(&format!("lpc.{DEBUGCON_NAME}.port"), &port);
    }
    Err(invalid())
}

/// An I/O port number as C's `strtoul(.., 0)` reads it (decimal, 0x hex
/// or 0 octal), all of the string.
fn parse_port(s: &str) -> Option<u16> {
    let (v, end, overflow) = strtoul(s);
    if s.is_empty() || end != s.len() || overflow || s.starts_with(['-', '+', ' ']) {
        return None;
    }
    u16::try_from(v).ok()
}

/// Where `-l debugcon` output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugconConfig {
    /// A host file to append to, or [`DEBUGCON_STDERR`].
    pub path: String,
    pub port: u16,
}

/// The debug console the tree asks for (`lpc.debugcon.path`, also
/// reachable through `-o`/`-k`), with its port checked.
pub fn debugcon_config(cfg: &Config) -> Result<Option<DebugconConfig>, ConfigError> {
    let Some(path) = cfg.get(&format!("lpc.{DEBUGCON_NAME}.path")) else {
        return Ok(None);
    };
    let port = match cfg.get(&format!("lpc.{DEBUGCON_NAME}.port")) {
        None => DEBUGCON_DEFAULT_PORT,
        Some(p) => parse_port(&p)
            .ok_or_else(|| ConfigError::Invalid(format!("invalid debugcon port '{p}'")))?,
    };
    if path.is_empty() {
        return Err(ConfigError::Invalid("empty debugcon path".into()));
    }
    Ok(Some(DebugconConfig { path, port }))
}

/// bhyve's `lpc_fwcfg() == "qemu"`: the guest gets QEMU's fw_cfg
/// interface (any other value leaves it out, as in bhyve).
pub fn lpc_fwcfg_is_qemu(cfg: &Config) -> bool {
    cfg.get("lpc.fwcfg").as_deref() == Some("qemu")
}

fn split(s: &str) -> (&str, Option<&str>) {
    match s.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// What `-l help` prints.
pub fn lpc_help_text() -> String {
    let mut s = String::from("bootrom\n");
    for name in LPC_UART_NAMES {
        s.push_str(name);
        s.push('\n');
    }
    s.push_str("tpm\n");
    s.push_str(PCTESTDEV_NAME);
    s.push('\n');
    s.push_str(DEBUGCON_NAME);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lpc(args: &[&str]) -> Result<String, ConfigError> {
        let mut cfg = Config::new();
        for a in args {
            lpc_device_parse(&mut cfg, a)?;
        }
        Ok(cfg.dump())
    }

    #[test]
    fn uarts_and_testdev() {
        assert_eq!(lpc(&["com1,stdio"]).unwrap(), "lpc.com1.path=stdio\n");
        assert_eq!(
            lpc(&["COM2,/dev/nmdm0A", "com1,stdio"]).unwrap(),
            "lpc.com2.path=/dev/nmdm0A\nlpc.com1.path=stdio\n"
        );
        assert_eq!(
            lpc(&["com3,tcp=127.0.0.1:4444"]).unwrap(),
            "lpc.com3.path=tcp=127.0.0.1:4444\n"
        );
        assert_eq!(lpc(&["com4"]).unwrap(), "");
        assert_eq!(lpc(&["pc-testdev"]).unwrap(), "lpc.pc-testdev=true\n");
    }

    #[test]
    fn bootrom_forms() {
        assert_eq!(lpc(&["bootrom,/fw.fd"]).unwrap(), "lpc.bootrom=/fw.fd\n");
        assert_eq!(
            lpc(&["bootrom,/fw.fd,/vars.fd,fwcfg=qemu"]).unwrap(),
            "lpc.bootrom=/fw.fd\nlpc.bootvars=/vars.fd\nlpc.fwcfg=qemu\n"
        );
        assert_eq!(
            lpc(&["bootrom,/fw.fd,fwcfg=qemu"]).unwrap(),
            "lpc.bootrom=/fw.fd\nlpc.fwcfg=qemu\n"
        );
        let e = lpc(&["bootrom"]).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (4, "invalid bootrom option \"bootrom\"".into())
        );
    }

    #[test]
    fn tpm() {
        assert_eq!(
            lpc(&["tpm,passthru,/dev/tpm0"]).unwrap(),
            "tpm.type=passthru\ntpm.path=/dev/tpm0\ntpm.version=2.0\n"
        );
        assert_eq!(
            lpc(&["tpm,swtpm,/s,version=1.2"]).unwrap(),
            "tpm.type=swtpm\ntpm.path=/s\ntpm.version=1.2\n"
        );
        assert_eq!(
            lpc(&["tpm,x"]).unwrap_err().to_string(),
            "invalid tpm path \"tpm,x\""
        );
    }

    #[test]
    fn unknown() {
        assert_eq!(lpc(&["fwcfg,qemu"]).unwrap(), "lpc.fwcfg=qemu\n");
        for bad in ["com5,stdio", "", "fwcfg", "fwcfg,seabios", "lpc"] {
            let e = lpc(&[bad]).unwrap_err();
            assert_eq!(e.exit_code(), crate::EX_USAGE);
            assert_eq!(
                e.to_string(),
                format!("invalid lpc device configuration '{bad}'")
            );
        }
    }

    #[test]
    fn help() {
        assert_eq!(
            lpc_help_text(),
            "bootrom\ncom1\ncom2\ncom3\ncom4\ntpm\npc-testdev\ndebugcon\n"
        );
    }

    #[test]
    fn debugcon() {
        assert_eq!(
            lpc(&["debugcon,/tmp/sea.log"]).unwrap(),
            "lpc.debugcon.path=/tmp/sea.log\nlpc.debugcon.port=0x402\n"
        );
        assert_eq!(
            lpc(&["DebugCon,stderr,port=0xe9"]).unwrap(),
            "lpc.debugcon.path=stderr\nlpc.debugcon.port=0xe9\n"
        );
        for bad in [
            "debugcon",
            "debugcon,",
            "debugcon,port=0x402",
            "debugcon,/l,port=0x10000",
            "debugcon,/l,port=",
            "debugcon,/l,port=-1",
            "debugcon,/l,port=12x",
            "debugcon,/l,iobase=0x402",
        ] {
            let e = lpc(&[bad]).unwrap_err();
            assert_eq!(e.exit_code(), crate::EX_USAGE, "{bad}");
            assert_eq!(
                e.to_string(),
                format!("invalid lpc device configuration '{bad}'")
            );
        }
        let mut cfg = Config::new();
        assert_eq!(debugcon_config(&cfg).unwrap(), None);
        lpc_device_parse(&mut cfg, "debugcon,/x,port=1026").unwrap();
        assert_eq!(
            debugcon_config(&cfg).unwrap(),
            Some(DebugconConfig {
                path: "/x".into(),
                port: 0x402
            })
        );
        // -o can reach the same variables; a bad port there is an error.
        cfg.set("lpc.debugcon.port", "0x1ffff").unwrap();
        let e = debugcon_config(&cfg).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (4, "invalid debugcon port '0x1ffff'".into())
        );
        cfg.root_mut().remove("lpc.debugcon.port");
        assert_eq!(debugcon_config(&cfg).unwrap().unwrap().port, 0x402);
    }

    #[test]
    fn fwcfg_selection() {
        let mut cfg = Config::with_defaults();
        assert!(!lpc_fwcfg_is_qemu(&cfg));
        lpc_device_parse(&mut cfg, "bootrom,/usr/share/seabios/bios.bin,fwcfg=qemu").unwrap();
        assert!(lpc_fwcfg_is_qemu(&cfg));
        cfg.set("lpc.fwcfg", "QEMU").unwrap();
        assert!(!lpc_fwcfg_is_qemu(&cfg));
    }
}
