//! bhyve's configuration: the bhyve_config(5) tree and the bhyve(8)
//! command line that fills it.
//!
//! Nothing here touches KVM or the host beyond reading `-k` files and
//! checking that `-f` files can be opened, so the whole command line can
//! be checked (and dumped with `-o config.dump=1`) without creating a VM.

mod cnum;
pub mod cpuset;
pub mod emulations;
pub mod fwcfg;
pub mod getopt;
pub mod kvfile;
pub mod lpc;
pub mod memsize;
pub mod options;
pub mod pci_slot;
pub mod topology;
pub mod tree;

pub use cpuset::{parse_cpuset, pincpu_parse, vcpu_cpusets};
pub use emulations::{find_emulation, pci_parse_legacy_config, Emulation, EMULATIONS};
pub use fwcfg::{fwcfg_parse_cmdline_arg, fwcfg_user_files, FwCfgUserFile, UserFileSource};
pub use kvfile::{parse_config_lines, parse_simple_config_file};
pub use lpc::{lpc_device_parse, lpc_help_text};
pub use memsize::parse_memsize;
pub use options::{parse_bhyve_args, run_params, usage_text, Parsed, RunParams, RESTORE_FILE_VAR};
pub use pci_slot::{check_lpc_bridges, pci_devices, pci_help_text, pci_parse_slot, PciAddr};
pub use topology::{topology_parse, Topology, MAX_VCPUS};
pub use tree::{parse_bool, Config, Node};

/// Variables bhyve 14 sets before parsing its command line
/// (`bhyve_init_config`/`set_defaults`), in bhyve's order.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("acpi_tables", "false"),
    ("acpi_tables_in_memory", "true"),
    ("memory.size", "256M"),
    ("x86.strictmsr", "true"),
    ("lpc.fwcfg", "bhyve"),
];

/// Errors in configuration input. Each carries the exit status bhyve uses
/// for it through [`ConfigError::exit_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Invalid configuration node: {0}")]
    BadName(String),
    #[error("Attempting to add value to existing node {0}")]
    IsNode(String),
    #[error("Failed to create configuration node {0}: it is a variable")]
    IsVariable(String),
    #[error("Invalid value {value} for boolean variable {name}")]
    BadBool { name: String, value: String },
    /// A usage error: bhyve exits with EX_USAGE (64).
    #[error("{0}")]
    Usage(String),
    /// Any other invalid input: bhyve exits with 4.
    #[error("{0}")]
    Invalid(String),
}

/// sysexits(3) EX_USAGE, bhyve's status for malformed options.
pub const EX_USAGE: i32 = 64;
/// bhyve's status for errors (BHYVE_EXIT_ERROR).
pub const EXIT_ERROR: i32 = 4;

impl ConfigError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Usage(_) => EX_USAGE,
            _ => EXIT_ERROR,
        }
    }
}

/// The process arguments after argv\[0\] as UTF-8 strings. A non-UTF-8
/// argument (legal in Linux file names, but not representable in the config
/// tree) is an error naming it, rather than the panic of `std::env::args`.
pub fn utf8_args() -> Result<Vec<String>, String> {
    std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument is not valid UTF-8: '{}'", a.to_string_lossy()))
        })
        .collect()
}
