//! bhyve's configuration: the bhyve_config(5) tree and the bhyve(8)
//! command line that fills it.
//!
//! Nothing here touches KVM or the host beyond reading `-k` files, so the
//! whole command line can be checked (and dumped with `-o config.dump=1`)
//! without creating a VM.

pub mod tree;

pub use tree::{parse_bool, Config, Node};

/// Variables bhyve sets before parsing its command line (bhyverun.c
/// `set_defaults`), in bhyve's order.
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
    #[error("invalid configuration variable name '{0}'")]
    BadName(String),
    #[error("configuration variable '{0}' is a node")]
    IsNode(String),
    #[error("configuration node '{0}' is a variable")]
    IsVariable(String),
    #[error("invalid value '{value}' for boolean variable {name}")]
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
