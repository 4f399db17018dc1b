//! `testguest NAME OUT_PATH`: writes one test guest image to a file.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, out] = args.as_slice() else {
        eprintln!("usage: testguest NAME OUT_PATH");
        eprintln!("guests: {}", bhyve_testguests::GUESTS.join(" "));
        return ExitCode::from(64);
    };
    let Some(bytes) = bhyve_testguests::guest_bytes(name) else {
        eprintln!(
            "testguest: unknown guest '{name}' (guests: {})",
            bhyve_testguests::GUESTS.join(" ")
        );
        return ExitCode::from(64);
    };
    match std::fs::write(out, bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testguest: {out}: {e}");
            ExitCode::from(1)
        }
    }
}
