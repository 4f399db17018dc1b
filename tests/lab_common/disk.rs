//! A disk test in the lab, the same for every storage front end (virtio-blk,
//! virtio-scsi, ahci, nvme): L1 gives L2 a 16 MiB file of random bytes;
//! L2's driver writes a pattern (4 MiB at 1 MiB) with fsync, reads it back
//! past the page cache and discards 4 MiB at 8 MiB; after bhyve exits, L1
//! hashes the file where L2 wrote and checks the discarded range became a
//! hole (zeroes, fewer blocks allocated, same size).

use super::Run;

/// The guest's part for the block device `dev`: writes `pattern` repeated
/// over 4 MiB at 1 MiB with fsync (`LABR write STATUS`), reads it back
/// after dropping the page cache (`LABR readback SHA256`) and discards
/// 4 MiB at 8 MiB (`LABR blkdiscard STATUS`).
pub fn guest_io(dev: &str, pattern: &str) -> String {
    format!(
        r#"yes {pattern} | head -c 4194304 | dd of={dev} bs=65536 seek=16 conv=fsync 2>/dev/null
echo "LABR write $?"
sync
echo 3 >/proc/sys/vm/drop_caches
echo "LABR readback $(dd if={dev} bs=65536 skip=16 count=64 2>/dev/null | sha256sum | cut -c1-64)"
{}"#,
        guest_discard(dev)
    )
}

/// The discard of [`guest_io`] alone (`LABR blkdiscard STATUS`), for a
/// test that writes and reads its own way.
pub fn guest_discard(dev: &str) -> String {
    format!(
        r#"blkdiscard -o 8388608 -l 4194304 {dev}
echo "LABR blkdiscard $?"
sync
"#
    )
}

/// The job's part: `$img`, 16 MiB of random bytes in L1 (tagged `tag`),
/// then `setup`, then `boot` (the command running L2 with `$img`, see
/// [`super::bhyve_l2`]) and its status (`RESULT bhyve`); then what L2
/// left in the file, read by [`expect_file`]; `cleanup` runs after the
/// file is removed, and bhyve's stderr ends the output.
pub fn job(tag: &str, pattern: &str, setup: &str, boot: &str, cleanup: &str) -> String {
    format!(
        r#"
img=$TMPDIR/{tag}-$$.img
dd if=/dev/urandom of=$img bs=1M count=16 2>/dev/null
result du_before $(du -k $img | cut -f1)
{setup}{boot}
result bhyve $?
result want $(yes {pattern} | head -c 4194304 | sha256sum | cut -c1-64)
result file $(dd if=$img bs=65536 skip=16 count=64 2>/dev/null | sha256sum | cut -c1-64)
result hole_nonzero $(dd if=$img bs=1M skip=8 count=4 2>/dev/null | tr -d '\0' | wc -c)
result du_after $(du -k $img | cut -f1)
result size $(stat -c %s $img)
rm -f $img
{cleanup}cat bhyve.err
"#
    )
}

/// Checks the file after a [`job`]: the pattern where L2 wrote it, a
/// hole where L2 discarded (zeroes, at least 4 MiB fewer allocated), the
/// size unchanged. Returns the pattern's hash.
pub fn expect_file(r: &Run) -> String {
    let want = r
        .result("want")
        .unwrap_or_else(|| panic!("no pattern hash\n{}", r.explain()));
    r.expect("file", &want);
    r.expect("hole_nonzero", "0");
    r.expect("size", "16777216");
    let kib = |key: &str| -> u64 {
        r.result(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}\n{}", r.explain()))
    };
    let (before, after) = (kib("du_before"), kib("du_after"));
    assert!(
        after + 4096 <= before,
        "no hole punched: {before} KiB -> {after} KiB"
    );
    want
}

/// Checks a [`guest_io`] run: the guest's `LABR` lines include `identity`
/// (what the driver saw of the disk) and both I/O statuses 0, the read
/// back matches the pattern, and the file is as [`expect_file`] wants.
/// Returns the `LABR` lines.
pub fn expect_io(r: &Run, identity: &[&str]) -> Vec<String> {
    let mut want_lines = identity.to_vec();
    want_lines.extend(["write 0", "blkdiscard 0"]);
    let lines = r.expect_labr(&want_lines);
    let want = expect_file(r);
    assert!(
        lines.contains(&format!("readback {want}")),
        "the guest read back other bytes: {lines:?}\n{}",
        r.explain()
    );
    lines
}
