//! bhyve(8): run a virtual machine.
//!
//! Thin: the command line becomes a configuration tree (bhyve-config),
//! the vmm runs it, and the exit status is bhyve's (0 reboot, 1 power-off,
//! 2 halt, 3 triple fault, 4 error; usage errors as bhyve(8) documents).

use std::process::ExitCode;

use bhyve_config::{lpc_help_text, parse_bhyve_args, pci_help_text, usage_text, Parsed};

/// `-s help` entries that do something today; the rest are marked.
const PCI_WORKING: [&str; 3] = ["hostbridge", "amd_hostbridge", "lpc"];
/// `-l help` entries that do something today.
const LPC_WORKING: [&str; 7] = [
    "bootrom",
    "com1",
    "com2",
    "com3",
    "com4",
    "pc-testdev",
    "debugcon",
];

fn mark(list: &str, working: &[&str]) -> String {
    list.lines()
        .map(|name| {
            if working.contains(&name) {
                format!("{name}\n")
            } else {
                format!("{name} (not implemented yet)\n")
            }
        })
        .collect()
}

/// Diagnostics from the libraries (`log` records) on stderr. `BHYVE_LOG`
/// sets the level (`error`, `warn`, `info`, `debug`, `trace`); the default
/// shows warnings, so a run prints nothing unless something is wrong.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            // A terminal on stderr may be in raw mode (com1,stdio): it
            // needs the carriage return; files and pipes do not.
            // SAFETY: isatty only inspects the descriptor.
            let cr = if unsafe { libc::isatty(2) } == 1 {
                "\r"
            } else {
                ""
            };
            eprintln!("bhyve: {}{cr}", r.args());
        }
    }

    fn flush(&self) {}
}

fn init_logging() {
    let level = match std::env::var("BHYVE_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("info") => log::LevelFilter::Info,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(level);
    }
}

fn status(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(4))
}

fn main() -> ExitCode {
    // A raw terminal must come back even if something panics.
    bhyve_backends::restore_terminal_on_panic();
    init_logging();
    let progname = std::env::args_os()
        .next()
        .and_then(|a| a.to_string_lossy().rsplit('/').next().map(str::to_string))
        .unwrap_or_else(|| "bhyve".into());
    let args = match bhyve_config::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            // bhyve has no non-UTF-8 case; an unusable argument is usage(1).
            eprintln!("bhyve: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = match parse_bhyve_args(&args) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::Dump(cfg)) => {
            print!("{}", cfg.dump());
            return ExitCode::from(1);
        }
        Ok(Parsed::Usage { code }) => {
            eprint!("{}", usage_text(&progname));
            return status(code);
        }
        Ok(Parsed::PciHelp) => {
            print!("{}", mark(&pci_help_text(), &PCI_WORKING));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::LpcHelp) => {
            print!("{}", mark(&lpc_help_text(), &LPC_WORKING));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bhyve: {e}");
            return status(e.exit_code());
        }
    };
    match bhyve_vmm::machine::run(&cfg) {
        Ok(code) => status(code),
        Err(e) => {
            eprintln!("bhyve: {e}");
            status(e.exit_code())
        }
    }
}
