//! `-l lpcdev[,conf]` (bhyve's `lpc_device_parse`) and `-l help`.

use crate::emulations::pci_parse_legacy_config;
use crate::{Config, ConfigError};

/// The 16550 UARTs behind the LPC bridge.
pub const LPC_UART_NAMES: [&str; 4] = ["com1", "com2", "com3", "com4"];
/// Name of the debug/test device (`pctestdev_getname`).
pub const PCTESTDEV_NAME: &str = "pc-testdev";

/// Applies one `-l` argument. Device names match case-insensitively.
/// `comN[,backend]` sets `lpc.comN.path`; `bootrom,romfile[,varfile]
/// [,name=value...]` sets `lpc.bootrom`, `lpc.bootvars` and options such
/// as `fwcfg=qemu` under `lpc`; `tpm,type,path[,opts]` fills `tpm`;
/// `pc-testdev` sets `lpc.pc-testdev=true`.
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
    Err(invalid())
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
        for bad in ["com5,stdio", "", "fwcfg,qemu", "lpc"] {
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
            "bootrom\ncom1\ncom2\ncom3\ncom4\ntpm\npc-testdev\n"
        );
    }
}
