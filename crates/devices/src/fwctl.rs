//! bhyve's firmware control interface (`fwctl.c`), what bhyve-flavoured
//! UEFI (`BHYVE_CODE.fd`, edk2's `BhyveFwCtlLib`) asks for the machine's
//! parameters with; the default `lpc.fwcfg=bhyve` with a boot ROM.
//!
//! It uses QEMU fw_cfg's ports with its own protocol:
//! - a 16-bit write of 0 to 0x510 resets the interface; then four byte
//!   reads (edk2 reads 0x511) return the signature "BHYV";
//! - a request is 32-bit writes to 0x510: total size in bytes (12-byte
//!   header included), operation, transaction ID, then the payload in
//!   words (the last one zero-padded);
//! - the response is 32-bit reads of 0x510: size (16-byte header plus the
//!   payload rounded up to words), operation, transaction ID, error
//!   (errno: 0, ENOENT, E2BIG), then the payload words.
//!
//! Operations: GET_LEN (4) and GET (3) of a named item ("hw.ncpu", the
//! only one bhyve exports): the payload is the NUL-terminated name (at
//! most 80 bytes); GET_LEN answers a 64-bit size, GET the 64-bit size
//! followed by the value. Any other operation consumes its payload and
//! answers ENOENT. The name is compared as bhyve does (`strncmp` over the
//! bytes received).
//!
//! As bhyve: a request shorter than its header stops the VM (exit 4); a
//! payload size that is not a multiple of 4 ends the request at the
//! last whole word. Malformed accesses (other sizes, port 0x511 writes)
//! are ignored and read as all ones.

use std::sync::Arc;

use crate::{BusDevice, ExitRequest, VmControl};

/// The request/response port; the signature is read at +1.
pub const FWCTL_PORT: u64 = 0x510;
/// Registered length: a 32-bit access at 0x510 and a byte at 0x511.
pub const FWCTL_PORT_LEN: u64 = 4;

pub const FWCTL_SIGNATURE: [u8; 4] = *b"BHYV";

pub const OP_NULL: u32 = 1;
pub const OP_ECHO: u32 = 2;
pub const OP_GET: u32 = 3;
pub const OP_GET_LEN: u32 = 4;
pub const OP_SET: u32 = 5;

/// errno values of the transport (FreeBSD's, as the firmware expects).
pub const ENOENT: u32 = 2;
pub const E2BIG: u32 = 7;

const REQ_HEADER_LEN: u32 = 12;
const RESP_HEADER_LEN: u32 = 16;
/// Longest item name a request may carry (bhyve's FGET_STRSZ).
pub const MAX_NAME: u32 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ident(usize),
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get {
        len_only: bool,
    },
    /// Consumes the payload, answers this errno.
    Fail(u32),
}

#[derive(Debug, Default)]
struct Request {
    words: u32,
    /// Payload bytes still expected.
    remaining: u32,
    op_code: u32,
    txid: u32,
    op: Option<Op>,
    name: Vec<u8>,
}

#[derive(Debug, Default)]
struct Response {
    words_read: u32,
    op_code: u32,
    txid: u32,
    error: u32,
    data: Vec<u8>,
    offset: usize,
}

pub struct Fwctl {
    vm: Arc<dyn VmControl>,
    /// Items in lookup order (the first that matches answers).
    items: Vec<(String, Vec<u8>)>,
    state: State,
    req: Request,
    resp: Response,
}

impl Fwctl {
    /// The interface with bhyve's one item, `hw.ncpu` (a 32-bit int).
    pub fn new(vm: Arc<dyn VmControl>, ncpus: u32) -> Self {
        Self::with_items(vm, vec![("hw.ncpu".into(), ncpus.to_le_bytes().to_vec())])
    }

    pub fn with_items(vm: Arc<dyn VmControl>, items: Vec<(String, Vec<u8>)>) -> Self {
        Fwctl {
            vm,
            items,
            state: State::Ident(0),
            req: Request::default(),
            resp: Response::default(),
        }
    }

    fn reset(&mut self) {
        self.state = State::Ident(0);
        self.req = Request::default();
        self.resp = Response::default();
    }

    /// bhyve's `ctl_locate`: `strncmp(name, oid, received)`.
    fn lookup(&self, name: &[u8]) -> Option<&[u8]> {
        self.items.iter().find_map(|(oid, value)| {
            let oid = oid.as_bytes();
            for (i, &a) in name.iter().enumerate() {
                let b = oid.get(i).copied().unwrap_or(0);
                if a != b {
                    return None;
                }
                if a == 0 {
                    break;
                }
            }
            Some(value.as_slice())
        })
    }

    fn finish_request(&mut self) {
        let req = std::mem::take(&mut self.req);
        let (error, data) = match req.op {
            Some(Op::Get { len_only }) => match self.lookup(&req.name) {
                Some(v) => {
                    // bhyve's size_t, then (GET) the value.
                    let mut d = (v.len() as u64).to_le_bytes().to_vec();
                    if !len_only {
                        d.extend_from_slice(v);
                    }
                    (0, d)
                }
                None => (ENOENT, Vec::new()),
            },
            Some(Op::Fail(e)) => (e, Vec::new()),
            None => (ENOENT, Vec::new()),
        };
        self.resp = Response {
            op_code: req.op_code,
            txid: req.txid,
            error,
            data,
            ..Response::default()
        };
        self.state = State::Response;
    }

    fn request_word(&mut self, v: u32) {
        let r = &mut self.req;
        match r.words {
            0 => {
                if v < REQ_HEADER_LEN {
                    self.vm.request_exit(ExitRequest::Error(format!(
                        "fwctl: message size error ({v} bytes)"
                    )));
                    self.reset();
                    return;
                }
                r.remaining = v - REQ_HEADER_LEN;
            }
            1 => r.op_code = v,
            2 => {
                r.txid = v;
                r.op = Some(match r.op_code {
                    OP_GET | OP_GET_LEN if r.remaining > MAX_NAME => Op::Fail(E2BIG),
                    OP_GET => Op::Get { len_only: false },
                    OP_GET_LEN => Op::Get { len_only: true },
                    _ => Op::Fail(ENOENT),
                });
                if r.remaining == 0 {
                    r.words += 1;
                    self.finish_request();
                    return;
                }
            }
            _ => {
                r.remaining = r.remaining.saturating_sub(4);
                // Bounded: a GET's payload is at most MAX_NAME bytes.
                if matches!(r.op, Some(Op::Get { .. })) {
                    r.name.extend_from_slice(&v.to_le_bytes());
                }
                if r.remaining < 4 {
                    r.words += 1;
                    self.finish_request();
                    return;
                }
            }
        }
        r.words += 1;
    }

    fn response_word(&mut self) -> u32 {
        let r = &mut self.resp;
        let v = match r.words_read {
            0 => RESP_HEADER_LEN + (r.data.len() as u32).div_ceil(4) * 4,
            1 => r.op_code,
            2 => r.txid,
            3 => r.error,
            _ => {
                let mut w = [0u8; 4];
                let rest = r.data.get(r.offset..).unwrap_or(&[]);
                let n = rest.len().min(4);
                w[..n].copy_from_slice(&rest[..n]);
                r.offset += 4;
                u32::from_le_bytes(w)
            }
        };
        r.words_read = r.words_read.saturating_add(1);
        if r.words_read >= 4 && r.offset >= r.data.len() {
            self.resp = Response::default();
            self.state = State::Request;
        }
        v
    }
}

impl BusDevice for Fwctl {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0 | 1, 1) => {
                data[0] = match self.state {
                    State::Ident(i) => {
                        let c = FWCTL_SIGNATURE[i];
                        self.state = if i + 1 >= FWCTL_SIGNATURE.len() {
                            State::Request
                        } else {
                            State::Ident(i + 1)
                        };
                        c
                    }
                    _ => 0xff,
                }
            }
            (0, 4) => {
                let v = match self.state {
                    State::Response => self.response_word(),
                    _ => u32::MAX,
                };
                data.copy_from_slice(&v.to_le_bytes());
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data) {
            // The guest wants the signature, whatever state it left.
            (0, [0, 0]) => self.reset(),
            (0, &[a, b, c, d]) if self.state == State::Request => {
                self.request_word(u32::from_le_bytes([a, b, c, d]))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::RecVm;

    fn dev() -> (Fwctl, Arc<RecVm>) {
        let vm = RecVm::new();
        (Fwctl::new(vm.clone(), 3), vm)
    }

    fn outw(f: &mut Fwctl, v: u16) {
        f.write(FWCTL_PORT, 0, &v.to_le_bytes());
    }
    fn outl(f: &mut Fwctl, v: u32) {
        f.write(FWCTL_PORT, 0, &v.to_le_bytes());
    }
    fn inl(f: &mut Fwctl) -> u32 {
        let mut b = [0u8; 4];
        f.read(FWCTL_PORT, 0, &mut b);
        u32::from_le_bytes(b)
    }
    fn inb(f: &mut Fwctl, offset: u64) -> u8 {
        let mut b = [0u8; 1];
        f.read(FWCTL_PORT, offset, &mut b);
        b[0]
    }

    /// edk2's BhyveFwCtlInitialize: reset, then the signature at 0x511.
    fn probe(f: &mut Fwctl) {
        outw(f, 0);
        let sig: Vec<u8> = (0..4).map(|_| inb(f, 1)).collect();
        assert_eq!(sig, b"BHYV");
    }

    /// edk2's BhyveFwCtl_MsgSend: size rounded to words, op, txid, name.
    fn send(f: &mut Fwctl, op: u32, txid: u32, payload: &[u8]) {
        let words = payload.len().div_ceil(4);
        outl(f, 12 + 4 * words as u32);
        outl(f, op);
        outl(f, txid);
        for c in payload.chunks(4) {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            outl(f, u32::from_le_bytes(w));
        }
    }

    /// Header words, then the payload bytes the header announces.
    fn recv(f: &mut Fwctl) -> ([u32; 4], Vec<u8>) {
        let h = [inl(f), inl(f), inl(f), inl(f)];
        let words = (h[0] - 16) / 4;
        let data = (0..words).flat_map(|_| inl(f).to_le_bytes()).collect();
        (h, data)
    }

    #[test]
    fn edk2_gets_hw_ncpu() {
        let (mut f, vm) = dev();
        probe(&mut f);
        assert_eq!(inb(&mut f, 1), 0xff, "signature read once");
        send(&mut f, OP_GET_LEN, 0xa5, b"hw.ncpu\0");
        let (h, d) = recv(&mut f);
        assert_eq!(h, [24, OP_GET_LEN, 0xa5, 0]);
        assert_eq!(d, 4u64.to_le_bytes());
        send(&mut f, OP_GET, 0xa6, b"hw.ncpu\0");
        let (h, d) = recv(&mut f);
        assert_eq!(h, [28, OP_GET, 0xa6, 0]);
        assert_eq!(&d[..8], &4u64.to_le_bytes());
        assert_eq!(&d[8..], &3u32.to_le_bytes());
        // Past the response: all ones until the next request.
        assert_eq!(inl(&mut f), u32::MAX);
        assert!(vm.exits().is_empty());
    }

    #[test]
    fn errors() {
        let (mut f, vm) = dev();
        probe(&mut f);
        send(&mut f, OP_GET, 1, b"hw.nope\0");
        assert_eq!(recv(&mut f), ([16, OP_GET, 1, ENOENT], vec![]));
        send(&mut f, OP_GET, 2, &[b'x'; 84]);
        assert_eq!(recv(&mut f), ([16, OP_GET, 2, E2BIG], vec![]));
        send(&mut f, OP_ECHO, 3, b"abcdefgh");
        assert_eq!(recv(&mut f), ([16, OP_ECHO, 3, ENOENT], vec![]));
        send(&mut f, 0xdead_beef, 4, b"");
        assert_eq!(recv(&mut f), ([16, 0xdead_beef, 4, ENOENT], vec![]));
        // bhyve's strncmp: a name without its NUL matches a prefix.
        send(&mut f, OP_GET_LEN, 5, b"hw.n");
        assert_eq!(recv(&mut f).0[3], 0);
        assert!(vm.exits().is_empty());
        // Shorter than a header: bhyve exits.
        outl(&mut f, 11);
        assert!(matches!(vm.exits()[..], [ExitRequest::Error(_)]));
    }

    #[test]
    fn reset_in_any_state_and_malformed_accesses() {
        let (mut f, vm) = dev();
        // Before the signature is read, requests are ignored.
        outl(&mut f, 16);
        assert_eq!(inl(&mut f), u32::MAX);
        probe(&mut f);
        // Half a request, then a reset: the next one starts clean.
        outl(&mut f, 20);
        outl(&mut f, OP_GET);
        probe(&mut f);
        send(&mut f, OP_GET_LEN, 9, b"hw.ncpu\0");
        // Half a response, then a reset.
        assert_eq!(inl(&mut f), 24);
        probe(&mut f);
        assert_eq!(inl(&mut f), u32::MAX, "no response pending");
        // Other sizes and port 0x511 writes do nothing.
        let mut w = [0u8; 2];
        f.read(FWCTL_PORT, 0, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        f.write(FWCTL_PORT, 1, &[0]);
        f.write(FWCTL_PORT, 0, &[0]);
        outw(&mut f, 1);
        send(&mut f, OP_GET_LEN, 10, b"hw.ncpu\0");
        assert_eq!(recv(&mut f).0, [24, OP_GET_LEN, 10, 0]);
        assert!(vm.exits().is_empty());
    }

    #[test]
    fn odd_payload_sizes_end_at_the_last_whole_word() {
        let (mut f, _vm) = dev();
        probe(&mut f);
        // 12 + 9 bytes: bhyve takes two words and answers.
        outl(&mut f, 21);
        outl(&mut f, OP_GET_LEN);
        outl(&mut f, 7);
        outl(&mut f, u32::from_le_bytes(*b"hw.n"));
        outl(&mut f, u32::from_le_bytes(*b"cpu\0"));
        assert_eq!(recv(&mut f).0, [24, OP_GET_LEN, 7, 0]);
        // A name that never stops is bounded by MAX_NAME.
        send(&mut f, OP_GET, 8, &[b'a'; 80]);
        assert_eq!(recv(&mut f).0, [16, OP_GET, 8, ENOENT]);
    }
}
