//! bhyveload(8) for Linux guests: creates (or re-initializes) a named VM
//! and loads a Linux kernel into it, for a later `bhyve ... <vmname>`.
//!
//! FreeBSD's bhyveload runs the FreeBSD loader against a disk image; a
//! Linux guest is loaded from a kernel file instead (`-k`, `-i`), and the
//! loader environment (`-e name=value`) becomes the kernel command line.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bhyve_config::getopt::{Getopt, GetoptItem};
use bhyve_config::{parse_bool, parse_memsize, ConfigError, EX_USAGE};
use bhyve_vmm::boot::{load_kernel, KernelInputs, LoadFailure};
use bhyve_vmm::store::{StoreError, VmStore};

const SYNOPSIS: &str = "\
usage: bhyveload [-CS] [-a args] [-c cons-dev] [-e name=value] [-h host-path]
                 [-i initrd] -k kernel [-m mem-size] [-o name=value] vmname";

const DETAILS: &str = "\
Creates the VM vmname (or re-initializes it when it exists and is not
running) and loads a Linux kernel for `bhyve ... vmname`.

  -k kernel      Linux kernel: bzImage, or ELF vmlinux with a PVH entry note
  -i initrd      initial ramdisk
  -e name=value  append name=value to the kernel command line (FreeBSD's
                 loader environment); may be repeated
  -a args        append args verbatim to the kernel command line; may be
                 repeated
  -h host-path   resolve relative -k and -i paths against host-path
  -m mem-size    guest memory, as bhyve -m: a number with an optional
                 K/M/G/T suffix (either case); a bare number below 1M is
                 in megabytes; default 256M
  -S             wire guest memory while loading (mlock)
  -C             accepted for compatibility (bhyve -C decides core dumps)
  -o name=value  boot.kernel=, boot.initrd=, boot.cmdline= (start of the
                 command line), memory.size=, memory.wired=
  -c cons-dev    only \"stdio\": there is no interactive loader
  -d, -l         not supported on Linux (see below)

Not supported: -d disk-path (extract the kernel and initrd from the disk
and pass -k/-i) and -l os-loader (the Linux loader is built in).
VMs live in $BHYVE_RUNDIR (default /run/bhyve as root, else
$XDG_RUNTIME_DIR/bhyve, else /tmp/bhyve-$UID); `bhyvectl --destroy
--vm=vmname` removes one.
";

/// An error line and bhyveload's exit status for it.
struct Fail(u8, String);

fn usage_err(msg: impl Into<String>) -> Fail {
    Fail(EX_USAGE as u8, msg.into())
}

fn err(msg: impl Into<String>) -> Fail {
    Fail(1, msg.into())
}

#[derive(Debug, Default)]
struct Opts {
    kernel: Option<String>,
    initrd: Option<String>,
    host_path: Option<PathBuf>,
    base_cmdline: String,
    /// `-e` and `-a` pieces, in command-line order.
    cmdline: Vec<String>,
    mem_size: Option<u64>,
    wired: bool,
    vmname: String,
}

fn memsize(v: &str) -> Result<u64, Fail> {
    match parse_memsize(v) {
        Ok(0) => Err(usage_err(format!("invalid memsize '{v}'"))),
        Ok(n) => Ok(n),
        Err(e) => Err(Fail(e.exit_code() as u8, e.to_string())),
    }
}

/// `-e name=value` as a kernel parameter; values with blanks are quoted the
/// way Linux's command-line parser expects.
fn env_param(arg: &str) -> Result<String, Fail> {
    let bad = || usage_err(format!("-e '{arg}': expected name=value"));
    let (name, value) = arg.split_once('=').ok_or_else(bad)?;
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '"') {
        return Err(bad());
    }
    if value.contains('"') {
        return Err(usage_err(format!(
            "-e '{arg}': value must not contain '\"'"
        )));
    }
    Ok(if value.contains(char::is_whitespace) {
        format!("{name}=\"{value}\"")
    } else {
        format!("{name}={value}")
    })
}

fn set_option(o: &mut Opts, arg: &str) -> Result<(), Fail> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| usage_err(format!("-o '{arg}': expected name=value")))?;
    match name {
        "boot.kernel" => o.kernel = Some(value.to_string()),
        "boot.initrd" => o.initrd = Some(value.to_string()),
        "boot.cmdline" => o.base_cmdline = value.to_string(),
        "memory.size" => o.mem_size = Some(memsize(value)?),
        "memory.wired" => {
            o.wired = parse_bool(value).ok_or_else(|| {
                usage_err(
                    ConfigError::BadBool {
                        name: name.into(),
                        value: value.into(),
                    }
                    .to_string(),
                )
            })?
        }
        _ => {
            return Err(usage_err(format!(
                "-o {name}: not a bhyveload setting (boot.kernel, boot.initrd, \
                 boot.cmdline, memory.size, memory.wired)"
            )))
        }
    }
    Ok(())
}

fn parse(args: &[String]) -> Result<Opts, Fail> {
    let mut o = Opts::default();
    let mut g = Getopt::new(args, "CSa:c:d:e:h:i:k:l:m:o:");
    for item in g.by_ref() {
        let (c, v) = match item {
            GetoptItem::Opt(c, v) => (c, v.unwrap_or_default()),
            GetoptItem::Error(e) => return Err(Fail(1, format!("{e}\n{SYNOPSIS}"))),
        };
        match c {
            'C' => {}
            'S' => o.wired = true,
            'a' => o.cmdline.push(v),
            'c' if v == "stdio" => {}
            'c' => return Err(usage_err(
                "-c: bhyveload has no interactive loader on Linux; only '-c stdio' is accepted \
                     (give the guest console to bhyve -l com1,...)",
            )),
            'd' => {
                return Err(usage_err(
                    "-d: loading from a disk image is not supported; extract the kernel and \
                     initrd and pass -k/-i",
                ))
            }
            'l' => {
                return Err(usage_err(
                    "-l: alternative OS loaders are not supported; the Linux kernel loader \
                     is built in (-k/-i)",
                ))
            }
            'e' => o.cmdline.push(env_param(&v)?),
            'h' => o.host_path = Some(PathBuf::from(v)),
            'i' => o.initrd = Some(v),
            'k' => o.kernel = Some(v),
            'm' => o.mem_size = Some(memsize(&v)?),
            'o' => set_option(&mut o, &v)?,
            _ => unreachable!("getopt returns only letters of its option string"),
        }
    }
    match g.operands() {
        [name] => o.vmname = name.clone(),
        _ => return Err(Fail(1, SYNOPSIS.to_string())),
    }
    Ok(o)
}

impl Opts {
    fn resolve(&self, p: &str) -> PathBuf {
        match &self.host_path {
            Some(h) if Path::new(p).is_relative() => h.join(p),
            _ => PathBuf::from(p),
        }
    }

    fn full_cmdline(&self) -> String {
        std::iter::once(self.base_cmdline.as_str())
            .chain(self.cmdline.iter().map(String::as_str))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn open(path: &Path) -> Result<File, Fail> {
    let f = File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    match f.metadata() {
        Ok(m) if m.is_file() => Ok(f),
        Ok(_) => Err(err(format!("{}: not a regular file", path.display()))),
        Err(e) => Err(err(format!("{}: {e}", path.display()))),
    }
}

fn run(o: &Opts) -> Result<(), Fail> {
    let kernel_path = o.resolve(o.kernel.as_deref().ok_or_else(|| {
        usage_err("no kernel: pass -k kernel (a bzImage, or an ELF vmlinux with a PVH note)")
    })?);
    // Everything that can fail on host input is checked before the VM is
    // touched.
    let mut kernel = open(&kernel_path)?;
    let initrd_path = o.initrd.as_deref().map(|p| o.resolve(p));
    let mut initrd = initrd_path.as_deref().map(open).transpose()?;
    let mem_size = o.mem_size.unwrap_or(256 << 20);
    let cmdline = o.full_cmdline();

    let store = VmStore::from_env();
    let inputs = KernelInputs {
        kernel: (&mut kernel, &kernel_path),
        initrd: initrd.as_mut().zip(initrd_path.as_deref()),
        cmdline: &cmdline,
    };
    let booted =
        load_kernel(&store, &o.vmname, mem_size, inputs, o.wired).map_err(|e| match e {
            LoadFailure::Store(StoreError::AlreadyRunning(n)) => err(format!("VM {n} is running")),
            e => err(e.to_string()),
        })?;
    if let Err(e) = booted.dir.save_entry(&booted.entry) {
        // Without its entry state the VM is not runnable: a VM this run
        // created goes away again.
        if booted.created {
            let _ = booted.dir.clone().remove(booted.lock);
        }
        return Err(err(e.to_string()));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match bhyve_config::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bhyveload: {e}");
            return ExitCode::from(1);
        }
    };
    if args.first().map(String::as_str) == Some("--help") {
        println!("{SYNOPSIS}\n\n{DETAILS}");
        return ExitCode::SUCCESS;
    }
    match parse(&args).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("bhyveload: {msg}");
            ExitCode::from(code)
        }
    }
}
