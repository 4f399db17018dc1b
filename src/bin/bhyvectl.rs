//! bhyvectl(8): control utility for named bhyve VMs.
//!
//! FreeBSD's bhyvectl talks to the kernel through /dev/vmm/<name>. Here a
//! VM is a directory in the run directory (see `bhyve_vmm::store`) and the
//! runtime operations go to the running bhyve's control socket.
//!
//! `--destroy` of a running VM powers it off first (FreeBSD destroys the
//! kernel VM under the running bhyve, which then exits), waits for bhyve
//! to exit, then removes the VM.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bhyve_vmm::control::{self, ControlError, Request, Response};
use bhyve_vmm::store::{StoreError, VmDir, VmStore};

/// How long `--destroy` waits for a powered-off bhyve to exit.
const DESTROY_WAIT: Duration = Duration::from_secs(10);

/// `DESTROY_WAIT`, or the milliseconds in the hidden
/// `BHYVECTL_DESTROY_WAIT_MS` (lets tests of a stuck VM finish quickly).
fn destroy_wait() -> Duration {
    std::env::var("BHYVECTL_DESTROY_WAIT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DESTROY_WAIT, Duration::from_millis)
}

const USAGE: &str = "\
Usage: bhyvectl --vm=<vmname>
       [--cpu=<vcpu_number>]
       [--destroy]
       [--get-stats]
       [--inject-nmi]
       [--force-reset]
       [--force-poweroff]
       bhyvectl --list

  --vm=NAME         operate on the VM NAME (created by bhyveload)
  --cpu=N           vCPU for --get-stats and --inject-nmi (default 0)
  --destroy         remove the VM; a running VM is powered off first
  --get-stats       print the vCPU's exit counters
  --inject-nmi      inject an NMI into the vCPU
  --force-reset     reset the VM (bhyve exits 0, as on reboot)
  --force-poweroff  power the VM off (bhyve exits 1)
  --list            list VMs: name and state (running, loaded: ready for
                    bhyve, stopped: needs bhyveload)

VMs live in $BHYVE_RUNDIR (default /run/bhyve as root, else
$XDG_RUNTIME_DIR/bhyve, else /tmp/bhyve-$UID): `ls $BHYVE_RUNDIR` is the
counterpart of FreeBSD's `ls /dev/vmm`.
";

#[derive(Default, Debug)]
struct Opts {
    vm: Option<String>,
    cpu: u32,
    destroy: bool,
    get_stats: bool,
    inject_nmi: bool,
    force_reset: bool,
    force_poweroff: bool,
    list: bool,
    help: bool,
}

/// getopt_long-style: `--opt=value` or `--opt value` for options that take
/// an argument.
fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("option '{what}' requires an argument"))
        };
        let flag = |set: &mut bool| -> Result<(), String> {
            if inline.is_some() {
                return Err(format!("option '{name}' doesn't allow an argument"));
            }
            *set = true;
            Ok(())
        };
        match name {
            "--vm" => o.vm = Some(value("--vm")?),
            "--cpu" => {
                let v = value("--cpu")?;
                o.cpu = v.parse().map_err(|_| format!("invalid vcpu '{v}'"))?;
            }
            "--destroy" => flag(&mut o.destroy)?,
            "--get-stats" => flag(&mut o.get_stats)?,
            "--inject-nmi" => flag(&mut o.inject_nmi)?,
            "--force-reset" => flag(&mut o.force_reset)?,
            "--force-poweroff" => flag(&mut o.force_poweroff)?,
            "--list" => flag(&mut o.list)?,
            "--help" | "-h" => flag(&mut o.help)?,
            "--create" => {
                return Err("--create is not supported: bhyveload creates VMs".to_string())
            }
            _ => return Err(format!("unrecognized option '{arg}'")),
        }
    }
    Ok(o)
}

fn list(store: &VmStore) -> Result<(), String> {
    for vm in store.list().map_err(|e| e.to_string())? {
        let state = if vm.running {
            "running"
        } else {
            match store.open(&vm.name).and_then(|d| d.entry()) {
                Ok(Some(_)) => "loaded",
                _ => "stopped",
            }
        };
        println!("{}\t{state}", vm.name);
    }
    Ok(())
}

/// Sends a runtime request; a VM without a running bhyve is an error.
fn ask(dir: &VmDir, req: Request) -> Result<Response, String> {
    match control::request(&dir.ctl_socket_path(), &req) {
        Ok(r) => Ok(r),
        Err(ControlError::NotRunning) => Err(format!("VM {} is not running", dir.name())),
        Err(e) => Err(format!("VM {}: {e}", dir.name())),
    }
}

fn print_stats(dir: &VmDir, cpu: u32) -> Result<(), String> {
    let Response::Stats(stats) = ask(dir, Request::Stats)? else {
        return Err(format!("VM {}: no statistics in reply", dir.name()));
    };
    let (_, counters) = stats
        .iter()
        .find(|(v, _)| *v == cpu)
        .ok_or_else(|| format!("VM {}: no vcpu {cpu}", dir.name()))?;
    println!("vcpu{cpu} stats:");
    for (name, value) in counters {
        println!("{name:<40}\t{value}");
    }
    Ok(())
}

fn destroy(store: &VmStore, dir: &VmDir) -> Result<(), String> {
    let mut powered_off = false;
    if dir.is_running() {
        match control::request(&dir.ctl_socket_path(), &Request::ForcePoweroff) {
            Ok(_) => powered_off = true,
            // Exited meanwhile, or a bhyveload at work (no socket): the
            // lock wait below sorts it out.
            Err(ControlError::NotRunning) => {}
            Err(e) => return Err(format!("VM {}: {e}", dir.name())),
        }
        let (start, wait) = (Instant::now(), destroy_wait());
        while dir.is_running() && start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    match store.destroy(dir.name()) {
        Ok(()) => Ok(()),
        // A bhyve run with -D removes the VM itself on power-off.
        Err(StoreError::NotFound(_)) if powered_off => Ok(()),
        Err(StoreError::AlreadyRunning(n)) => {
            Err(format!("VM {n} is still running; not destroyed"))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn run(o: &Opts) -> Result<(), String> {
    let store = VmStore::from_env();
    if o.list {
        return list(&store);
    }
    let name = o.vm.as_deref().unwrap_or_default();
    let dir = store.open(name).map_err(|e| e.to_string())?;
    // FreeBSD's order of operations.
    if o.inject_nmi {
        ask(&dir, Request::InjectNmi(o.cpu))?;
    }
    if o.get_stats {
        print_stats(&dir, o.cpu)?;
    }
    if o.force_reset {
        ask(&dir, Request::ForceReset)?;
    }
    if o.force_poweroff {
        ask(&dir, Request::ForcePoweroff)?;
    }
    if o.destroy {
        destroy(&store, &dir)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match bhyve_config::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bhyvectl: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bhyvectl: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    if opts.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if opts.vm.is_none() && !opts.list {
        eprint!("{USAGE}");
        return ExitCode::from(1);
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bhyvectl: {e}");
            ExitCode::from(1)
        }
    }
}
