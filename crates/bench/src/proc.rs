//! Running a VMM process and measuring it from the outside.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Sample {
    /// Process start to the first byte on its standard output.
    pub first_byte: Duration,
    /// Process start to exit.
    pub total: Duration,
    /// Peak resident set size in KiB (getrusage of the child).
    pub max_rss_kib: u64,
    pub status: i32,
    pub output: Vec<u8>,
}

/// Runs `cmd` to completion (stdin closed, stdout captured).
pub fn measure(cmd: &mut Command) -> Result<Sample> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut output = Vec::new();
    let mut first_byte = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = out.read(&mut buf).context("reading the guest console")?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| start.elapsed());
        output.extend_from_slice(&buf[..n]);
    }
    // Reap with wait4 to get the child's own rusage; std's wait would not
    // report it, so the Child handle is never waited on.
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let total = start.elapsed();
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok(Sample {
        first_byte: first_byte.unwrap_or(total),
        total,
        max_rss_kib: ru.ru_maxrss as u64,
        status,
        output,
    })
}
