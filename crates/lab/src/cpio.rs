//! A writer for the "newc" cpio format the kernel unpacks as initramfs.
//!
//! Only what an initramfs needs: directories, regular files and symlinks,
//! all owned by root. The kernel also accepts several archives one after
//! another, which is how a per-run script is appended to a shared base.

use std::collections::BTreeSet;
use std::path::Path;

use crate::{io_err, Result};

/// An archive being built in memory (initramfs images here are a few MiB).
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
    rdev: (u32, u32),
}

impl Cpio {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` (relative, `/`-separated) and its missing parents.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_string());
        self.entry(path, 0o040755, &[]);
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let path = path.trim_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(path, 0o100000 | (mode & 0o7777), data);
    }

    /// Adds a host file's contents under `path`.
    pub fn host_file(&mut self, path: &str, mode: u32, host: &Path) -> Result<()> {
        let data = std::fs::read(host).map_err(io_err(format!("reading {}", host.display())))?;
        self.file(path, mode, &data);
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(path, 0o120777, target.as_bytes());
    }

    /// Adds a character device node (the kernel needs `/dev/console` in
    /// the initramfs to give init its standard streams).
    pub fn chardev(&mut self, path: &str, major: u32, minor: u32) {
        let path = path.trim_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.rdev = (major, minor);
        self.entry(path, 0o020600, &[]);
        self.rdev = (0, 0);
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible archives
            data.len() as u32,
            0, // devmajor
            0, // devminor
            self.rdev.0,
            self.rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Ends the archive with its trailer and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a newc archive into (name, mode, data) triples.
    fn decode(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            let data_at = (110 + namesize + 3) & !3;
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size + 3) & !3;
            off += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty(), "bytes after the trailer at {off}");
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn archive_round_trips_with_parents_first() {
        let mut c = Cpio::new();
        c.file("bin/busybox", 0o755, b"ELF...");
        c.symlink("bin/sh", "busybox");
        c.file("/init", 0o755, b"#!/bin/sh\n");
        c.dir("bin");
        c.chardev("dev/console", 5, 1);
        let entries = decode(&c.finish());
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "init", "dev", "dev/console"]
        );
        assert_eq!(entries[5].1, 0o020600);
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!(entries[1].1, 0o100755);
        assert_eq!(entries[1].2, b"ELF...");
        assert_eq!(entries[2].1, 0o120777);
        assert_eq!(entries[2].2, b"busybox");
    }
}
