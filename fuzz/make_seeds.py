#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the device targets into
corpus/<target>/seed-*. The encodings are documented in
crates/devices/src/fuzzing/ (driver.rs for the chain program)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ALL = 0xFFFFFFFFFFFFFFFF


def u8(v): return struct.pack("<B", v)
def u16(v): return struct.pack("<H", v)
def u32(v): return struct.pack("<I", v)
def u64(v): return struct.pack("<Q", v)


def machine(features=ALL, cfg=()):
    b = u64(features) + u8(len(cfg))
    for off, val in cfg:
        b += u8(off) + u32(val)
    return b


def rd(data):
    return u8(0) + u16(len(data)) + data


def wr(n):
    return u8(1) + u16(n)


def raw(addr, n, writable=False, indirect=False):
    return u8(2 | int(writable) | (4 if indirect else 0)) + u32(addr) + u32(n)


def chain(q, *descs):
    return u8(q) + u8(len(descs)) + b"".join(descs)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# virtio-blk: options byte, machine, chains on queue 0.
def blkhdr(t, sector=0):
    return u32(t) + u32(0) + u64(sector)


blk = b"".join([
    chain(0, rd(blkhdr(0, 1)), wr(512), wr(1)),
    chain(0, rd(blkhdr(1, 2)), rd(bytes(range(256)) * 2), wr(1)),
    chain(0, rd(blkhdr(1, 3) + b"\xab" * 512), wr(1)),
    chain(0, rd(blkhdr(0, 0)), wr(1000), wr(24), wr(1)),
    chain(0, rd(blkhdr(4)), wr(1)),
    chain(0, rd(blkhdr(8)), wr(20), wr(1)),
    chain(0, rd(blkhdr(11)), rd(u64(8) + u32(8) + u32(0)), wr(1)),
    chain(0, rd(blkhdr(13)), rd(u64(16) + u32(8) + u32(1)), wr(1)),
    chain(0, rd(blkhdr(0, 127)), wr(1024), wr(1)),
    chain(0, rd(blkhdr(99)), wr(1)),
    chain(0, raw(0xFFFFF000, 16), wr(512), wr(1)),
    chain(0, rd(blkhdr(0)), raw(0x10000, 0xFFFFFFFF, writable=True), wr(1)),
    chain(0, rd(blkhdr(0)), wr(1), rd(b"\0" * 16)),
])
write("virtio_blk", "requests", u8(2) + machine() + blk)
write("virtio_blk", "read-only", u8(1) + machine() + blk)
write("virtio_blk", "4k-sectors", u8(4 | 8 | 2) + machine(0) + blk)

# virtio-scsi: options byte, machine (cdb_size at 24, sense_size at
# 20), chains on queues 0 (control) and 2 (requests).
LUN0 = bytes([1, 0, 0, 0, 0, 0, 0, 0])
LUN1 = bytes([1, 0, 0x40, 1, 0, 0, 0, 0])


def cdb(op, *rest):
    return bytes([op, *rest])


def scsireq(c, lun=LUN0, cdb_size=32):
    return lun + u64(1) + bytes([0, 0, 0]) + c.ljust(cdb_size, b"\0")


def be(v, n):
    return v.to_bytes(n, "big")


CDBS = {
    "tur": cdb(0x00, 0, 0, 0, 0, 0),
    "inquiry": cdb(0x12, 0, 0, 0, 96, 0),
    "vpd-00": cdb(0x12, 1, 0x00, 0, 255, 0),
    "vpd-80": cdb(0x12, 1, 0x80, 0, 255, 0),
    "vpd-83": cdb(0x12, 1, 0x83, 0, 255, 0),
    "vpd-b0": cdb(0x12, 1, 0xB0, 0, 255, 0),
    "vpd-b2": cdb(0x12, 1, 0xB2, 0, 255, 0),
    "readcap10": cdb(0x25) + bytes(9),
    "readcap16": cdb(0x9E, 0x10) + bytes(8) + be(32, 4) + bytes(2),
    "read10": cdb(0x28, 0) + be(1, 4) + b"\0" + be(1, 2) + b"\0",
    "write10": cdb(0x2A, 0) + be(2, 4) + b"\0" + be(1, 2) + b"\0",
    "read16": cdb(0x88, 0) + be(3, 8) + be(2, 4) + b"\0\0",
    "write16-fua": cdb(0x8A, 8) + be(4, 8) + be(1, 4) + b"\0\0",
    "reportluns": cdb(0xA0, 0, 0, 0, 0, 0) + be(256, 4) + b"\0\0",
    "modesense6": cdb(0x1A, 0, 0x3F, 0, 255, 0),
    "modesense10": cdb(0x5A, 0, 0x08, 0, 0, 0, 0) + be(255, 2) + b"\0",
    "sync10": cdb(0x35) + bytes(9),
    "unmap": cdb(0x42) + bytes(6) + be(24, 2) + b"\0",
    "writesame16-unmap": cdb(0x93, 0x08) + be(8, 8) + be(4, 4) + b"\0\0",
    "writesame10": cdb(0x41, 0) + be(8, 4) + b"\0" + be(2, 2) + b"\0",
    "requestsense": cdb(0x03, 0, 0, 0, 252, 0),
    "verify10": cdb(0x2F, 0) + be(0, 4) + b"\0" + be(1, 2) + b"\0",
    "startstop": cdb(0x1B, 0, 0, 0, 1, 0),
}
UNMAP_PARAM = be(22, 2) + be(16, 2) + bytes(4) + be(8, 8) + be(8, 4) + bytes(4)

for name, c in CDBS.items():
    param = UNMAP_PARAM if name == "unmap" else b""
    write("scsi_cdb", name, u8(2) + u8(len(c)) + c + param)
write("scsi_cdb", "absent-lun", u8(0x10) + u8(6) + CDBS["inquiry"])
write("scsi_cdb", "read-only", u8(1) + u8(16) + CDBS["writesame16-unmap"])

RESP = 12 + 96
scsi = b"".join([
    chain(2, rd(scsireq(CDBS["tur"])), wr(RESP)),
    chain(2, rd(scsireq(CDBS["inquiry"])), wr(RESP), wr(96)),
    chain(2, rd(scsireq(CDBS["reportluns"])), wr(RESP), wr(256)),
    chain(2, rd(scsireq(CDBS["readcap16"])), wr(RESP), wr(32)),
    chain(2, rd(scsireq(CDBS["read10"])), wr(RESP), wr(512)),
    chain(2, rd(scsireq(CDBS["write10"]) + b"\x77" * 512), wr(RESP)),
    chain(2, rd(scsireq(CDBS["unmap"])), rd(UNMAP_PARAM), wr(RESP)),
    chain(2, rd(scsireq(CDBS["writesame16-unmap"])), rd(bytes(512)), wr(RESP)),
    chain(2, rd(scsireq(CDBS["vpd-b0"])), wr(RESP), wr(64)),
    chain(2, rd(scsireq(CDBS["modesense6"], lun=LUN1)), wr(RESP), wr(255)),
    chain(2, rd(scsireq(CDBS["read10"], lun=bytes([1, 3, 0, 0, 0, 0, 0, 0]))), wr(RESP)),
    chain(2, rd(scsireq(CDBS["read10"])), wr(RESP), wr(100)),
    chain(2, rd(b"\1\0"), wr(RESP)),
    chain(0, rd(u32(0) + u32(0) + LUN0 + u64(1)), wr(1)),
    chain(0, rd(u32(0) + u32(7) + LUN0 + u64(1)), wr(1)),
    chain(0, rd(u32(1) + LUN0 + u32(0xFFFFFFFF)), wr(5)),
    chain(0, rd(u32(2) + LUN0 + u32(2)), wr(5)),
    chain(1, wr(16)),
])
write("virtio_scsi", "requests", u8(0x12) + machine() + scsi)
write("virtio_scsi", "read-only", u8(1) + machine() + scsi)
small = b"".join([
    chain(2, rd(scsireq(CDBS["read10"], cdb_size=6)), wr(12 + 18), wr(512)),
    chain(2, rd(scsireq(CDBS["inquiry"], cdb_size=6)), wr(12 + 18), wr(96)),
])
write("virtio_scsi", "cdb-sense-size", u8(2) + machine(ALL, [(24, 6), (20, 18)]) + small)


# virtio-9p: flags, then (type, tag, len, body) messages.
def s(b):
    return u16(len(b)) + b


def msg(ty, body, tag=1):
    return u8(ty) + u16(tag) + u16(len(body)) + body


NOFID = 0xFFFFFFFF
session = [
    msg(100, u32(8192 + 24) + s(b"9P2000.L"), tag=0xFFFF),
    msg(104, u32(0) + u32(NOFID) + s(b"root") + s(b"") + u32(0)),
    msg(110, u32(0) + u32(1) + u16(1) + s(b"hello")),
    msg(12, u32(1) + u32(2)),
    msg(116, u32(1) + u64(0) + u32(100)),
    msg(118, u32(1) + u64(3) + u32(5) + b"HELLO"),
    msg(24, u32(1) + u64(0x3FFF)),
    msg(50, u32(1) + u32(0)),
    msg(110, u32(0) + u32(2) + u16(0)),
    msg(14, u32(2) + s(b"new") + u32(0o102) + u32(0o644) + u32(0)),
    msg(72, u32(0) + s(b"dir") + u32(0o755) + u32(0)),
    msg(16, u32(0) + s(b"link") + s(b"../outside/secret") + u32(0)),
    msg(110, u32(0) + u32(3) + u16(1) + s(b"link")),
    msg(22, u32(3)),
    msg(110, u32(0) + u32(4) + u16(2) + s(b"sub") + s(b"..")),
    msg(110, u32(0) + u32(5) + u16(1) + s(b"..")),
    msg(12, u32(5) + u32(0)),
    msg(40, u32(5) + u64(0) + u32(4096)),
    msg(74, u32(0) + s(b"new") + u32(0) + s(b"renamed")),
    msg(70, u32(0) + u32(1) + s(b"hardlink")),
    msg(26, u32(1) + u32(0x7F) + u32(0o600) + u32(1) + u32(1) + u64(3) + u64(0) * 4),
    msg(8, u32(0)),
    msg(18, u32(0) + s(b"fifo") + u32(0o10644) + u32(0) + u32(0) + u32(0)),
    msg(18, u32(0) + s(b"blk") + u32(0o60644) + u32(8) + u32(0) + u32(0)),
    msg(30, u32(1) + u32(6) + s(b"")),
    msg(52, u32(1) + u8(1) + u32(0) + u64(0) + u64(0) + u32(1) + s(b"c")),
    msg(76, u32(0) + s(b"dir") + u32(0x200)),
    msg(122, u32(4)),
    msg(120, u32(1)),
    msg(0xFF, u32(3) + b"\x64\0"),
    msg(0xFF, u32(100) + b"\x64\1\0" + bytes(4)),
]
write("virtio_p9", "session", u8(0) + b"".join(session))
write("virtio_p9", "read-only", u8(1) + b"".join(session))

# virtio-net: flags, mtu, frames, machine; queue 0 receive, 1 transmit.
ETH = b"\xff" * 6 + b"\x58\x9c\xfc\0\0\2" + b"\x08\x00"
IP = bytes([0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
TCP = bytes(20)
FRAME = ETH + IP + TCP


def vnethdr(flags=0, gso=0, hdr_len=0, gso_size=0, cs_start=0, cs_off=0):
    return bytes([flags, gso]) + u16(hdr_len) + u16(gso_size) + u16(cs_start) + u16(cs_off) + u16(0)


frames = [FRAME, FRAME + bytes(1000)]
inject = u8(len(frames)) + b"".join(u16(len(f)) + f for f in frames)
net = b"".join([
    chain(0, wr(1526)),
    chain(0, wr(12), wr(60)),
    chain(0, wr(100)),
    chain(0, wr(2000)),
    chain(1, rd(vnethdr() + FRAME)),
    chain(1, rd(vnethdr()), rd(FRAME)),
    chain(1, rd(vnethdr(1, 0, 0, 0, 34, 16) + FRAME)),
    chain(1, rd(vnethdr(1, 1, 54, 1448, 34, 16) + FRAME + bytes(3000))),
    chain(1, rd(vnethdr(0, 0x81, 54, 0, 0, 0) + FRAME)),
    chain(1, rd(vnethdr(1, 0, 0, 0, 0xFFF0, 0xFFF0) + FRAME)),
    chain(1, rd(b"\0" * 5)),
    chain(1, rd(vnethdr()), wr(10)),
    chain(1, raw(0xFFFFFF00, 0x1000)),
])
write("virtio_net", "vnet", u8(1) + u16(1500) + inject + machine() + net)
write("virtio_net", "plain-mtu", u8(2) + u16(100) + inject + machine() + net)
write("virtio_net", "no-features", u8(1) + u16(0) + inject + machine(0) + net)


# virtio-console: flags, host bytes, machine; queues 0/1 port 0, 2/3
# control, 4/5 port 1.
def ctl(port, ev, val, payload=b""):
    return u32(port) + u16(ev) + u16(val) + payload


con = b"".join([
    *[chain(2, wr(64)) for _ in range(6)],
    chain(3, rd(ctl(0, 0, 1))),
    chain(3, rd(ctl(0, 3, 1))),
    chain(3, rd(ctl(1, 3, 0))),
    chain(3, rd(ctl(0, 6, 1))),
    chain(3, rd(ctl(99, 3, 1))),
    chain(3, rd(ctl(0, 77, 1))),
    chain(3, rd(b"\0\0")),
    chain(0, wr(64)),
    chain(0, wr(3), wr(3)),
    chain(1, rd(b"hello, host\n")),
    chain(1, rd(b"two "), rd(b"parts\n")),
    chain(4, wr(64)),
    chain(5, rd(b"port one\n")),
])
host = b"hello, guest\n"
write("virtio_console", "multiport", u8(3) + u16(len(host)) + host + machine() + con)
write("virtio_console", "no-client", u8(2) + u16(0) + machine() + con)
write("virtio_console", "single-port", u8(1) + u16(len(host)) + host + machine(0) + con)
