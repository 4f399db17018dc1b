//! The bhyve(8) command line: options applied to the tree in command-line
//! order, exactly as bhyve's option loop and the checks after it do.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cpuset::{pincpu_parse, vcpu_cpusets};
use crate::fwcfg::fwcfg_parse_cmdline_arg;
use crate::getopt::{Getopt, GetoptItem};
use crate::kvfile::{apply_option, parse_simple_config_file};
use crate::lpc::lpc_device_parse;
use crate::memsize::parse_memsize;
use crate::pci_slot::pci_parse_slot;
use crate::topology::{topology_parse, Topology};
use crate::{Config, ConfigError};

/// bhyve's option letters. `-I` (ioapic) is accepted and ignored like
/// bhyve does; `-r` is always accepted (see [`RESTORE_FILE_VAR`]).
const OPTSTRING: &str = "aehuwxACDHIPSWYk:f:o:p:G:c:s:m:l:K:U:r:";

/// Tree variable that records `-r file`. bhyve keeps the restore file
/// outside the tree (and only in snapshot-enabled builds); it is stored
/// here so the binary sees it, at the cost of one extra `config.dump`
/// line when `-r` is used.
pub const RESTORE_FILE_VAR: &str = "restore_file";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run the VM described by the tree.
    Run(Config),
    /// `-o config.dump=1`: print [`Config::dump`] to stdout and exit 1.
    Dump(Config),
    /// Print [`usage_text`] to stderr and exit with `code` (0 for `-h`,
    /// 1 for an unknown option, a missing option argument or a bad
    /// operand count).
    Usage { code: i32 },
    /// `-s help`: print [`crate::pci_help_text`] to stdout, exit 0.
    PciHelp,
    /// `-l help`: print [`crate::lpc_help_text`] to stdout, exit 0.
    LpcHelp,
}

/// bhyve's `strncmp(optarg, "help", strlen(optarg)) == 0`: any prefix of
/// "help", the empty string included.
fn is_help(arg: &str) -> bool {
    "help".starts_with(arg)
}

/// bhyve's `parse_gdb_options`: `[w][address:]port`.
fn parse_gdb_options(cfg: &mut Config, arg: &str) -> Result<(), ConfigError> {
    let arg = match arg.strip_prefix('w') {
        Some(rest) => {
            cfg.set_bool("gdb.wait", true)?;
            rest
        }
        None => arg,
    };
    let port = match arg.rsplit_once(':') {
        Some((address, port)) => {
            cfg.set("gdb.address", address)?;
            port
        }
        None => arg,
    };
    cfg.set("gdb.port", port)
}

/// Parses bhyve's arguments (without `argv[0]`) into the configuration
/// tree, starting from [`Config::with_defaults`]. Errors carry bhyve's
/// message and exit status ([`ConfigError::exit_code`]).
///
/// Like bhyve, this stops after the `config.dump` check; [`run_params`]
/// makes the checks bhyve does next (topology, pinning, memory size).
pub fn parse_bhyve_args(args: &[String]) -> Result<Parsed, ConfigError> {
    let mut cfg = Config::with_defaults();
    let mut getopt = Getopt::new(args, OPTSTRING);
    for item in getopt.by_ref() {
        let (c, arg) = match item {
            GetoptItem::Opt(c, arg) => (c, arg.unwrap_or_default()),
            GetoptItem::Error(_) => return Ok(Parsed::Usage { code: 1 }),
        };
        match c {
            'a' => cfg.set_bool("x86.x2apic", false)?,
            'A' => cfg.set_bool("acpi_tables", true)?,
            'C' => cfg.set_bool("memory.guest_in_core", true)?,
            'c' => topology_parse(&mut cfg, &arg)?,
            'D' => cfg.set_bool("destroy_on_poweroff", true)?,
            'e' => cfg.set_bool("x86.strictio", true)?,
            'f' => fwcfg_parse_cmdline_arg(&mut cfg, &arg)?,
            'G' => parse_gdb_options(&mut cfg, &arg)?,
            'H' => cfg.set_bool("x86.vmexit_on_hlt", true)?,
            'h' => return Ok(Parsed::Usage { code: 0 }),
            // Deprecated: an I/O APIC is always present.
            'I' => {}
            'K' => cfg.set("keyboard.layout", &arg)?,
            'k' => parse_simple_config_file(&mut cfg, Path::new(&arg))?,
            'l' if is_help(&arg) => return Ok(Parsed::LpcHelp),
            'l' => lpc_device_parse(&mut cfg, &arg)?,
            'm' => cfg.set("memory.size", &arg)?,
            'o' => apply_option(&mut cfg, &arg)?,
            'P' => cfg.set_bool("x86.vmexit_on_pause", true)?,
            'p' => pincpu_parse(&mut cfg, &arg)?,
            'r' => cfg.set(RESTORE_FILE_VAR, &arg)?,
            'S' => cfg.set_bool("memory.wired", true)?,
            's' if is_help(&arg) => return Ok(Parsed::PciHelp),
            's' => {
                pci_parse_slot(&mut cfg, &arg)?;
            }
            'U' => cfg.set("uuid", &arg)?,
            'u' => cfg.set_bool("rtc.use_localtime", false)?,
            'W' => cfg.set_bool("virtio_msix", false)?,
            'w' => cfg.set_bool("x86.strictmsr", false)?,
            'x' => cfg.set_bool("x86.x2apic", true)?,
            'Y' => cfg.set_bool("x86.mptable", false)?,
            _ => return Ok(Parsed::Usage { code: 1 }),
        }
    }
    match getopt.operands() {
        [] => {}
        [vmname] => cfg.set("name", vmname)?,
        _ => return Ok(Parsed::Usage { code: 1 }),
    }
    // The name may also come from -o name=... or a -k file.
    if cfg.get("name").is_none() {
        return Ok(Parsed::Usage { code: 1 });
    }
    if cfg.get_bool_default("config.dump", false)? {
        return Ok(Parsed::Dump(cfg));
    }
    Ok(Parsed::Run(cfg))
}

/// What bhyve derives from the tree once parsing is done and before it
/// creates the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunParams {
    pub topology: Topology,
    /// Host CPUs per vCPU (`None`: not pinned).
    pub cpusets: Vec<Option<BTreeSet<u32>>>,
    /// Guest memory in bytes.
    pub memsize: u64,
}

/// Runs bhyve's post-parse checks in bhyve's order: topology, vCPU
/// pinning, `memory.size`, then the vCPU limit. Errors carry bhyve's
/// message and exit status.
pub fn run_params(cfg: &Config) -> Result<RunParams, ConfigError> {
    let topology = Topology::calc(cfg)?;
    let cpusets = vcpu_cpusets(cfg, usize::from(topology.cpus))?;
    let value = cfg.get("memory.size").unwrap_or_default();
    let memsize = parse_memsize(&value)?;
    topology.check_limit()?;
    Ok(RunParams {
        topology,
        cpusets,
        memsize,
    })
}

/// bhyve's usage message for program name `progname`.
pub fn usage_text(progname: &str) -> String {
    let pad = " ".repeat(progname.chars().count());
    format!(
        "Usage: {progname} [-AaCDeHhPSuWwxY]\n\
         \x20      {pad} [-c [[cpus=]numcpus][,sockets=n][,cores=n][,threads=n]]\n\
         \x20      {pad} [-G port] [-k config_file] [-l lpc] [-m mem] [-o var=value]\n\
         \x20      {pad} [-p vcpu:hostcpu] [-r file] [-s pci] [-U uuid] vmname\n\
         \x20      -A: create ACPI tables\n\
         \x20      -a: local apic is in xAPIC mode (deprecated)\n\
         \x20      -C: include guest memory in core file\n\
         \x20      -c: number of CPUs and/or topology specification\n\
         \x20      -D: destroy on power-off\n\
         \x20      -e: exit on unhandled I/O access\n\
         \x20      -G: start a debug server\n\
         \x20      -H: vmexit from the guest on HLT\n\
         \x20      -h: help\n\
         \x20      -k: key=value flat config file\n\
         \x20      -K: PS2 keyboard layout\n\
         \x20      -l: LPC device configuration\n\
         \x20      -m: memory size\n\
         \x20      -o: set config 'var' to 'value'\n\
         \x20      -P: vmexit from the guest on pause\n\
         \x20      -p: pin 'vcpu' to 'hostcpu'\n\
         \x20      -r: path to checkpoint file\n\
         \x20      -S: guest memory cannot be swapped\n\
         \x20      -s: <slot,driver,configinfo> PCI slot config\n\
         \x20      -U: UUID\n\
         \x20      -u: RTC keeps UTC time\n\
         \x20      -W: force virtio to use single-vector MSI\n\
         \x20      -w: ignore unimplemented MSRs\n\
         \x20      -x: local APIC is in x2APIC mode\n\
         \x20      -Y: disable MPtable generation\n"
    )
}

#[cfg(test)]
mod tests;
