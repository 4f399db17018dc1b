//! Disk images of the storage tests: their contents and, after a run,
//! their comparison and holes.

use std::ops::Range;
use std::os::fd::AsRawFd;

/// Deterministic incompressible bytes (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Whether `r` of the file is one hole (SEEK_HOLE/SEEK_DATA).
pub fn is_hole(f: &std::fs::File, r: Range<usize>) -> bool {
    let fd = f.as_raw_fd();
    // SAFETY: lseek on a file descriptor we own; no memory involved.
    let (hole, data) = unsafe {
        (
            libc::lseek(fd, r.start as i64, libc::SEEK_HOLE),
            libc::lseek(fd, r.start as i64, libc::SEEK_DATA),
        )
    };
    hole == r.start as i64 && (data < 0 || data >= r.end as i64)
}

/// Panics at the first byte where `got` differs from `want`, naming
/// `before` there (`raw`: the run's output).
pub fn compare(what: &str, got: &[u8], want: &[u8], before: &[u8], raw: &str) {
    assert_eq!(got.len(), want.len(), "{what}: size\n{raw}");
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: byte {i:#x} is {:#x}, expected {:#x} (before {:#x})\n{raw}",
            got[i], want[i], before[i]
        );
    }
}
