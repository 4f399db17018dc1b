//! NVM command set I/O commands: Read, Write, Flush, Write Zeroes and
//! Dataset Management, turned into backend requests on guest memory.
//! Lengths are capped by MDTS, LBA ranges checked without overflow, and
//! the data's PRPs walked by [`prp`](super::prp).

use super::ctrl::{Outcome, Shared, State};
use super::identify::{MAX_TRANSFER, ONCS_DSM};
use super::prp;
use super::spec::{feat, io, Command, Status};
use crate::blockif::{BlockBuffers, BlockOp, BlockRequest};

/// DSM ranges: up to 256 of 16 bytes.
const DSM_RANGE: usize = 16;
const DSM_ATTR_DEALLOCATE: u32 = 1 << 2;

pub(super) fn execute(sh: &Shared, st: &mut State, cmd: &Command) -> Outcome {
    let nsid_ok = cmd.nsid == 1 || (cmd.opc == io::FLUSH && cmd.nsid == 0xffff_ffff);
    if !nsid_ok {
        return Outcome::status(Status::INVALID_NAMESPACE);
    }
    if cmd.psdt() != 0 || cmd.fuse() != 0 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let r = match cmd.opc {
        io::READ | io::WRITE => read_write(sh, st, cmd),
        io::FLUSH => Ok(vec![request(BlockOp::Flush, 0, 0)]),
        io::WRITE_ZEROES => write_zeroes(sh, st, cmd),
        io::DSM => dsm(sh, cmd),
        _ => Err(Status::INVALID_OPCODE),
    };
    match r {
        Ok(reqs) => Outcome::Submit(reqs),
        Err(s) => Outcome::status(s),
    }
}

fn request(op: BlockOp, offset: u64, len: u64) -> BlockRequest {
    BlockRequest {
        op,
        offset,
        len,
        buffers: BlockBuffers::None,
        fua: false,
    }
}

/// Byte offset and length of `nlb` blocks from `slba`, when they lie in
/// the namespace.
fn range(sh: &Shared, slba: u64, nlb: u64) -> Result<(u64, u64), Status> {
    let blocks = sh.blocks();
    if slba >= blocks || nlb > blocks - slba {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    Ok((slba << sh.lba_shift(), nlb << sh.lba_shift()))
}

fn slba(cmd: &Command) -> u64 {
    u64::from(cmd.cdw10) | (u64::from(cmd.cdw11) << 32)
}

fn read_write(sh: &Shared, st: &State, cmd: &Command) -> Result<Vec<BlockRequest>, Status> {
    let write = cmd.opc == io::WRITE;
    let nlb = u64::from(cmd.cdw12 & 0xffff) + 1;
    if nlb << sh.lba_shift() > MAX_TRANSFER {
        return Err(Status::INVALID_FIELD);
    }
    let (offset, len) = range(sh, slba(cmd), nlb)?;
    if write && sh.read_only {
        return Err(Status::NS_WRITE_PROTECTED);
    }
    let segs = prp::segments(&sh.mem, cmd.prp1, cmd.prp2, len)?;
    let fua = write && write_through(st, cmd);
    Ok(vec![BlockRequest {
        op: if write { BlockOp::Write } else { BlockOp::Read },
        offset,
        len,
        buffers: BlockBuffers::Guest {
            mem: sh.mem.clone(),
            segs,
        },
        fua,
    }])
}

/// Force Unit Access (CDW12 bit 30 of Write and Write Zeroes), or every
/// write when the host turned the volatile write cache off.
fn write_through(st: &State, cmd: &Command) -> bool {
    let wce = st.features[usize::from(feat::VOLATILE_WC)] & 1 != 0;
    cmd.cdw12 & (1 << 30) != 0 || !wce
}

fn write_zeroes(sh: &Shared, st: &State, cmd: &Command) -> Result<Vec<BlockRequest>, Status> {
    let nlb = u64::from(cmd.cdw12 & 0xffff) + 1;
    let (offset, len) = range(sh, slba(cmd), nlb)?;
    if sh.read_only {
        return Err(Status::NS_WRITE_PROTECTED);
    }
    // DEAC: the host allows deallocating the blocks.
    let unmap = cmd.cdw12 & (1 << 25) != 0 && sh.can_delete;
    let mut r = request(BlockOp::WriteZeroes { unmap }, offset, len);
    r.fua = write_through(st, cmd);
    Ok(vec![r])
}

fn dsm(sh: &Shared, cmd: &Command) -> Result<Vec<BlockRequest>, Status> {
    if sh.ident.oncs & ONCS_DSM == 0 {
        return Err(Status::INVALID_OPCODE);
    }
    let nr = (cmd.cdw10 & 0xff) as usize + 1;
    let mut raw = vec![0u8; nr * DSM_RANGE];
    prp::copy_from(&sh.mem, cmd.prp1, cmd.prp2, &mut raw)?;
    let mut ranges = Vec::with_capacity(nr);
    for r in raw.chunks_exact(DSM_RANGE) {
        let nlb = u64::from(u32::from_le_bytes(r[4..8].try_into().expect("4")));
        let slba = u64::from_le_bytes(r[8..16].try_into().expect("8"));
        if nlb == 0 {
            continue;
        }
        ranges.push(range(sh, slba, nlb)?);
    }
    if cmd.cdw11 & DSM_ATTR_DEALLOCATE == 0 {
        // Only hints (integral read/write): nothing to do.
        return Ok(Vec::new());
    }
    if sh.read_only {
        return Err(Status::NS_WRITE_PROTECTED);
    }
    if !sh.can_delete {
        // Deallocation is advisory (dsm=enable on a backend that cannot).
        return Ok(Vec::new());
    }
    Ok(ranges
        .into_iter()
        .map(|(o, l)| request(BlockOp::Discard, o, l))
        .collect())
}
