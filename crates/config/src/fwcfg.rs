//! `-f [name=]name,(string|file)=value`: user files for QEMU's fw_cfg
//! (bhyve's `qemu_fwcfg_parse_cmdline_arg`).
//!
//! bhyve keeps these in a list beside the tree and reads a `file=` at
//! parse time. Here they live in the tree, in command-line order, as
//! `fwcfg.user.N.name` plus `fwcfg.user.N.string` or `fwcfg.user.N.file`
//! (so `config.dump` shows them and `-k` files can set them); `-f` still
//! checks at parse time that the file can be opened, so a bad path is a
//! usage error as in bhyve, and [`FwCfgUserFile::load`] reads it when the
//! VM is built.

use std::path::PathBuf;

use crate::{Config, ConfigError};

/// A fw_cfg name's room, NUL included (`QEMU_FWCFG_MAX_NAME`).
const MAX_NAME: usize = 56;
/// fw_cfg sizes are 32-bit.
const MAX_SIZE: u64 = u32::MAX as u64;
/// Tree node holding the user files.
const USER_NODE: &str = "fwcfg.user";

/// Where a user file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFileSource {
    /// `string=`: the text and a terminating NUL, as bhyve stores it.
    String(String),
    /// `file=`: a host file's contents.
    File(PathBuf),
}

/// One `-f` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgUserFile {
    pub name: String,
    pub source: UserFileSource,
}

impl FwCfgUserFile {
    /// The file's contents as the guest sees them.
    pub fn load(&self) -> Result<Vec<u8>, ConfigError> {
        match &self.source {
            UserFileSource::String(s) => {
                let mut v = Vec::with_capacity(s.len() + 1);
                v.extend_from_slice(s.as_bytes());
                v.push(0);
                Ok(v)
            }
            UserFileSource::File(p) => {
                let data = std::fs::read(p).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "Unable to read fw_cfg file \"{}\": {e}",
                        p.display()
                    ))
                })?;
                if data.len() as u64 > MAX_SIZE {
                    return Err(ConfigError::Invalid(format!(
                        "fw_cfg file \"{}\" is larger than 4 GiB",
                        p.display()
                    )));
                }
                Ok(data)
            }
        }
    }
}

/// Parses one `-f` argument without touching the host. Errors carry the
/// reason; [`fwcfg_parse_cmdline_arg`] wraps them in bhyve's message.
pub fn parse_fwcfg_user_file(opt: &str) -> Result<FwCfgUserFile, String> {
    let rest = opt.strip_prefix("name=").unwrap_or(opt);
    let Some((name, value)) = rest.split_once(',') else {
        return Err(format!(
            "Invalid fw_cfg option \"{opt}\" (-f [name=]<name>,(string|file)=<value>)"
        ));
    };
    if name.len() >= MAX_NAME {
        return Err(format!("fw_cfg name too long: \"{opt}\""));
    }
    // bhyve would add a nameless file; no firmware can look it up.
    if name.is_empty() {
        return Err("fw_cfg name is empty".into());
    }
    let source = if let Some(s) = value.strip_prefix("string=") {
        UserFileSource::String(s.to_string())
    } else if let Some(p) = value.strip_prefix("file=") {
        UserFileSource::File(PathBuf::from(p))
    } else {
        return Err(format!(
            "Invalid fw_cfg option \"{opt}\" (-f [name=]<name>,(string|file)=<value>)"
        ));
    };
    Ok(FwCfgUserFile {
        name: name.to_string(),
        source,
    })
}

/// bhyve's `-f`: parses `opt`, checks a `file=` can be read and is not
/// too large, and appends the item to `fwcfg.user`. Errors are usage
/// errors (EX_USAGE) with bhyve's "invalid fwcfg item" message.
pub fn fwcfg_parse_cmdline_arg(cfg: &mut Config, opt: &str) -> Result<(), ConfigError> {
    let fail = |why: String| ConfigError::Usage(format!("invalid fwcfg item '{opt}': {why}"));
    let item = parse_fwcfg_user_file(opt).map_err(fail)?;
    if let UserFileSource::File(p) = &item.source {
        let meta = std::fs::File::open(p)
            .and_then(|f| f.metadata())
            .map_err(|e| fail(format!("Can't open fw_cfg file \"{}\": {e}", p.display())))?;
        if meta.is_dir() {
            return Err(fail(format!("\"{}\" is a directory", p.display())));
        }
        if meta.len() > MAX_SIZE {
            return Err(fail(format!("\"{}\" is larger than 4 GiB", p.display())));
        }
    }
    let existing = fwcfg_user_files(cfg).map_err(|e| fail(e.to_string()))?;
    if existing.iter().any(|f| f.name == item.name) {
        return Err(fail(format!("\"{}\" is given twice", item.name)));
    }
    // Entries from -o/-k may use any index: take the first free one.
    let free = (existing.len()..)
        .find(|i| cfg.root().node(&format!("{USER_NODE}.{i}")).is_none())
        .unwrap_or(existing.len());
    let node = cfg.root_mut().create_node(&format!("{USER_NODE}.{free}"))?;
    node.set_value("name", &item.name)?;
    match &item.source {
        UserFileSource::String(s) => node.set_value("string", s)?,
        UserFileSource::File(p) => node.set_value("file", &p.to_string_lossy())?,
    }
    Ok(())
}

/// The user files in the tree, in order. An entry needs a `name` and
/// exactly one of `string`/`file` (entries may also come from `-o`/`-k`).
pub fn fwcfg_user_files(cfg: &Config) -> Result<Vec<FwCfgUserFile>, ConfigError> {
    let Some(node) = cfg.root().node(USER_NODE) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for idx in node.child_names() {
        let path = format!("{USER_NODE}.{idx}");
        let bad =
            |why: &str| ConfigError::Invalid(format!("invalid fw_cfg user file {path}: {why}"));
        let name = cfg
            .get(&format!("{path}.name"))
            .ok_or_else(|| bad("no name"))?;
        if name.is_empty() || name.len() >= MAX_NAME {
            return Err(bad("name is empty or longer than 55 bytes"));
        }
        let string = cfg.get(&format!("{path}.string"));
        let file = cfg.get(&format!("{path}.file"));
        let source = match (string, file) {
            (Some(s), None) => UserFileSource::String(s),
            (None, Some(f)) => UserFileSource::File(PathBuf::from(f)),
            _ => return Err(bad("needs one of 'string' or 'file'")),
        };
        out.push(FwCfgUserFile { name, source });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, v: &str) -> FwCfgUserFile {
        FwCfgUserFile {
            name: name.into(),
            source: UserFileSource::String(v.into()),
        }
    }

    #[test]
    fn parse_forms() {
        assert_eq!(
            parse_fwcfg_user_file("opt/com.page/example,string=Hello"),
            Ok(s("opt/com.page/example", "Hello"))
        );
        assert_eq!(
            parse_fwcfg_user_file("name=opt/x,string=a,b=c"),
            Ok(s("opt/x", "a,b=c"))
        );
        assert_eq!(
            parse_fwcfg_user_file("etc/x,file=/tmp/f"),
            Ok(FwCfgUserFile {
                name: "etc/x".into(),
                source: UserFileSource::File("/tmp/f".into())
            })
        );
        // bhyve does not insist on QEMU's "opt/" convention.
        assert!(parse_fwcfg_user_file("bootorder,string=x").is_ok());
        let ok55 = format!("{},string=", "n".repeat(55));
        assert!(parse_fwcfg_user_file(&ok55).is_ok());
        for bad in [
            "opt/x",
            "opt/x,str=1",
            "opt/x,",
            ",string=x",
            "name=,string=x",
            &format!("{},string=", "n".repeat(56)),
        ] {
            assert!(parse_fwcfg_user_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cmdline_stores_in_order_and_loads() {
        let dir = std::env::temp_dir().join(format!("fwcfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("blob");
        std::fs::write(&f, [1u8, 2, 3]).unwrap();
        let mut cfg = Config::new();
        fwcfg_parse_cmdline_arg(&mut cfg, "opt/b,string=hi").unwrap();
        fwcfg_parse_cmdline_arg(&mut cfg, &format!("opt/a,file={}", f.display())).unwrap();
        assert_eq!(
            cfg.dump(),
            format!(
                "fwcfg.user.0.name=opt/b\nfwcfg.user.0.string=hi\n\
                 fwcfg.user.1.name=opt/a\nfwcfg.user.1.file={}\n",
                f.display()
            )
        );
        let files = fwcfg_user_files(&cfg).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].load().unwrap(), b"hi\0");
        assert_eq!(files[1].load().unwrap(), [1, 2, 3]);

        let e = fwcfg_parse_cmdline_arg(&mut cfg, "opt/b,string=again").unwrap_err();
        assert_eq!(e.exit_code(), crate::EX_USAGE);
        assert_eq!(
            e.to_string(),
            "invalid fwcfg item 'opt/b,string=again': \"opt/b\" is given twice"
        );
        let missing = dir.join("missing");
        let e = fwcfg_parse_cmdline_arg(&mut cfg, &format!("opt/c,file={}", missing.display()))
            .unwrap_err();
        assert_eq!(e.exit_code(), crate::EX_USAGE);
        assert!(e.to_string().contains("No such file"), "{e}");
        let e = fwcfg_parse_cmdline_arg(&mut cfg, &format!("opt/c,file={}", dir.display()))
            .unwrap_err();
        assert!(e.to_string().ends_with("is a directory"), "{e}");
        // A file gone by the time the VM is built: one error, status 4.
        std::fs::remove_file(&f).unwrap();
        let e = files[1].load().unwrap_err();
        assert_eq!(e.exit_code(), crate::EXIT_ERROR);
        assert!(
            e.to_string().starts_with("Unable to read fw_cfg file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tree_entries_are_checked() {
        let mut cfg = Config::new();
        assert_eq!(fwcfg_user_files(&cfg).unwrap(), vec![]);
        cfg.set("fwcfg.user.x.name", "opt/k").unwrap();
        cfg.set("fwcfg.user.x.string", "v").unwrap();
        assert_eq!(fwcfg_user_files(&cfg).unwrap(), vec![s("opt/k", "v")]);
        cfg.set("fwcfg.user.x.file", "/f").unwrap();
        let e = fwcfg_user_files(&cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid fw_cfg user file fwcfg.user.x: needs one of 'string' or 'file'"
        );
        let mut cfg = Config::new();
        cfg.set("fwcfg.user.0.string", "v").unwrap();
        assert!(fwcfg_user_files(&cfg).is_err());
    }
}
