#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bhyve_devices::fuzzing::ahci(data);
});
