//! Deterministic replay of the fuzz corpus (`fuzz/corpus/<target>/`)
//! through the same entry points the cargo-fuzz targets call
//! (`bhyve_devices::fuzzing`): every input that once found a bug, or
//! that a fuzzing run kept for its coverage, must keep passing.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("virtio_queue", bhyve_devices::fuzzing::virtio_queue),
    ("virtio_transport", bhyve_devices::fuzzing::virtio_transport),
    ("virtio_blk", bhyve_devices::fuzzing::virtio_blk),
    ("virtio_scsi", bhyve_devices::fuzzing::virtio_scsi),
    ("scsi_cdb", bhyve_devices::fuzzing::scsi_cdb),
    ("virtio_p9", bhyve_devices::fuzzing::virtio_p9),
    ("virtio_net", bhyve_devices::fuzzing::virtio_net),
    ("virtio_console", bhyve_devices::fuzzing::virtio_console),
    ("ahci", bhyve_devices::fuzzing::ahci),
    ("e1000", bhyve_devices::fuzzing::e1000),
    ("nvme", bhyve_devices::fuzzing::nvme_controller),
];

#[test]
fn corpus_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut n = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            target(&data);
            n += 1;
        }
    }
    assert!(n >= TARGETS.len());
}
