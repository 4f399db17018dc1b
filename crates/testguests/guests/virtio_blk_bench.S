/*
 * virtio_blk_bench: the virtio-blk benchmark guest of `bhyve-bench blk`.
 *
 * Drives the first 1af4:1001 function of bus 0 through the legacy
 * transport (bench64.S: CPL3, polled used ring, no interrupts), taking
 * only VIRTIO_BLK_F_FLUSH (a write-back cache, as Linux; QEMU turns its
 * cache write-through for a driver that does not take it), and runs
 * timed phases, each a fixed number of requests:
 *
 *   randread-4k-qd1, randread-4k-qd32, randwrite-4k-qd1,
 *   randwrite-4k-qd32   "reqs=N" requests each (default 2000), 4 KiB at
 *                       a random 4 KiB-aligned offset of the disk;
 *   seqread-1m-qd4, seqwrite-1m-qd4   "seqreqs=N" (default 64) 1 MiB
 *                       requests (one data descriptor each) at
 *                       consecutive offsets, wrapping at the disk's end.
 *
 * Each prints "BENCH NAME COUNT req BYTES bytes CYCLES tsc KICKS kicks", then the
 * guest prints "virtio_blk_bench: done" and exits with EXIT_PASS. A
 * request that does not complete with VIRTIO_BLK_S_OK, a disk smaller
 * than 1 MiB or a queue too small for 32 requests fails (EXIT_FAIL).
 * Every write stamps the first 8 bytes of its buffer with its sector
 * number (little endian), so the host can check the data landed.
 * A request is three descriptors: header, data, status (slot s uses
 * 3s..3s+2), so QD 32 needs a queue of 96.
 */
#include "common.h"
#include "bench64.S"

#define BLK_ID          0x10011af4
#define F_FLUSH         (1 << 9)
#define T_IN            0
#define T_OUT           1
#define DATA_BASE       0x2000000       /* 32 MiB: 4 x 1 MiB of buffers */
#define MAX_QD          32

/* Extra fields of a blk phase after struct phase. */
#define P_TYPE          P_GENERIC_BYTES
#define P_LEN           (P_GENERIC_BYTES + 8)
#define P_SEQ           (P_GENERIC_BYTES + 16)
#define PHASE_BYTES     (P_GENERIC_BYTES + 24)

        .text
bench_main:
        leaq k_reqs(%rip), %rdi
        movl $2000, %esi
        call opt_dec
        movq %rax, n_reqs(%rip)
        leaq k_seqreqs(%rip), %rdi
        movl $64, %esi
        call opt_dec
        movq %rax, n_seqreqs(%rip)

        movl $BLK_ID, %edi
        call pci_find
        testl %eax, %eax
        jnz 1f
        leaq s_none(%rip), %rsi
        jmp fail64
1:      movl %eax, %edi
        movl $F_FLUSH, %esi
        call vl_init
        movw vio_base(%rip), %dx        /* capacity in 512-byte sectors */
        addw $L_CONFIG, %dx
        inl %dx, %eax
        movl %eax, %ecx
        addw $4, %dx
        inl %dx, %eax
        shlq $32, %rax
        orq %rcx, %rax
        shrq $11, %rax                  /* whole MiB */
        jnz 2f
        leaq s_small(%rip), %rsi
        jmp fail64
2:      movq %rax, disk_mib(%rip)
        shlq $8, %rax
        movq %rax, disk_blocks(%rip)    /* 4 KiB blocks */
        xorl %edi, %edi
        leaq ring(%rip), %rsi
        leaq vq(%rip), %rdx
        call vq_setup
        cmpl $(3 * MAX_QD), vq+Q_SIZE(%rip)
        jae 3f
        leaq s_qsize_small(%rip), %rsi
        jmp fail64
3:      call vl_driver_ok
        leaq s_start(%rip), %rsi
        call puts64

        leaq phases(%rip), %rbx
4:      cmpq $0, P_NAME(%rbx)
        je 6f
        movq n_reqs(%rip), %rax
        cmpq $0, P_SEQ(%rbx)
        je 5f
        movq n_seqreqs(%rip), %rax
5:      movq %rax, P_COUNT(%rbx)
        movq $0, seq_pos(%rip)
        movq %rbx, %rdi
        call vq_run
        addq $PHASE_BYTES, %rbx
        jmp 4b
6:      leaq s_done(%rip), %rsi
        call puts64
        movl $EXIT_PASS, %eax
        jmp exit64

/* blk_submit: %rdi = slot, %rbx = phase: header, data and status
   descriptors at 3 * slot; returns the head. */
blk_submit:
        pushq %r12
        pushq %r13
        movq %rdi, %r12
        cmpq $0, P_SEQ(%rbx)
        je 1f
        movq seq_pos(%rip), %rax        /* sequential, in MiB */
        incq seq_pos(%rip)
        xorl %edx, %edx
        divq disk_mib(%rip)
        movq %rdx, %rax
        shlq $11, %rax
        jmp 2f
1:      movq rng(%rip), %rax            /* xorshift64 */
        movq %rax, %rdx
        shlq $13, %rdx
        xorq %rdx, %rax
        movq %rax, %rdx
        shrq $7, %rdx
        xorq %rdx, %rax
        movq %rax, %rdx
        shlq $17, %rdx
        xorq %rdx, %rax
        movq %rax, rng(%rip)
        xorl %edx, %edx
        divq disk_blocks(%rip)
        movq %rdx, %rax
        shlq $3, %rax
2:      movq %r12, %rcx                 /* header: type, reserved, sector */
        shlq $4, %rcx
        leaq hdrs(%rip), %rdx
        addq %rcx, %rdx
        movl P_TYPE(%rbx), %ecx
        movl %ecx, (%rdx)
        movl $0, 4(%rdx)
        movq %rax, 8(%rdx)
        leaq status(%rip), %r13
        addq %r12, %r13
        movb $0xff, (%r13)              /* the device must overwrite it */
        leaq (%r12,%r12,2), %rdi        /* 3 * slot */
        movq %rdi, %rcx
        shlq $4, %rcx
        addq vq+Q_DESC(%rip), %rcx
        movq %rdx, (%rcx)               /* header */
        movl $16, 8(%rcx)
        movw $VRING_DESC_F_NEXT, 12(%rcx)
        leal 1(%rdi), %eax
        movw %ax, 14(%rcx)
        movq 8(%rdx), %r8               /* sector */
        movq P_LEN(%rbx), %rax          /* data */
        movl %eax, 24(%rcx)
        mulq %r12
        addq $DATA_BASE, %rax
        movq %rax, 16(%rcx)
        cmpl $T_IN, P_TYPE(%rbx)
        je 3f
        movq %r8, (%rax)                /* a write stamps its sector */
        movw $VRING_DESC_F_NEXT, %ax
        jmp 4f
3:      movw $(VRING_DESC_F_NEXT | VRING_DESC_F_WRITE), %ax
4:      movw %ax, 28(%rcx)
        leal 2(%rdi), %eax
        movw %ax, 30(%rcx)
        movq %r13, 32(%rcx)             /* status */
        movl $1, 40(%rcx)
        movw $VRING_DESC_F_WRITE, 44(%rcx)
        movw $0, 46(%rcx)
        movl %edi, %eax
        popq %r13
        popq %r12
        ret

/* blk_complete: %rdi = slot: its status byte must be VIRTIO_BLK_S_OK. */
blk_complete:
        leaq status(%rip), %rax
        movzbl (%rax,%rdi), %eax
        testl %eax, %eax
        jnz 1f
        ret
1:      leaq s_status(%rip), %rsi
        call puts64
        call puthex64q
        call newline64
        movl $EXIT_FAIL, %eax
        jmp exit64

        .section .rodata
k_reqs:         .asciz "reqs="
k_seqreqs:      .asciz "seqreqs="
s_req:          .asciz "req"
s_rr1:          .asciz "randread-4k-qd1"
s_rr32:         .asciz "randread-4k-qd32"
s_rw1:          .asciz "randwrite-4k-qd1"
s_rw32:         .asciz "randwrite-4k-qd32"
s_sr:           .asciz "seqread-1m-qd4"
s_sw:           .asciz "seqwrite-1m-qd4"
s_none:         .asciz "virtio_blk_bench: no 1af4:1001 function on bus 0\n"
s_small:        .asciz "virtio_blk_bench: disk smaller than 1 MiB\n"
s_qsize_small:  .asciz "virtio_blk_bench: queue smaller than 96 descriptors\n"
s_status:       .asciz "virtio_blk_bench: request failed with status "
s_start:        .asciz "virtio_blk_bench: running\n"
s_done:         .asciz "virtio_blk_bench: done\n"

        .data
        .balign 8
rng:            .quad 0x9e3779b97f4a7c15
#define PHASE(name, qd, type, len, seq) \
        .quad name, 0, qd, len, blk_submit, blk_complete, vq, s_req, 0, type, len, seq
phases:
        PHASE(s_rr1, 1, T_IN, 4096, 0)
        PHASE(s_rr32, MAX_QD, T_IN, 4096, 0)
        PHASE(s_rw1, 1, T_OUT, 4096, 0)
        PHASE(s_rw32, MAX_QD, T_OUT, 4096, 0)
        PHASE(s_sr, 4, T_IN, 0x100000, 1)
        PHASE(s_sw, 4, T_OUT, 0x100000, 1)
        .quad 0

        .bss
        .balign 8
n_reqs:         .quad 0
n_seqreqs:      .quad 0
disk_mib:       .quad 0
disk_blocks:    .quad 0
seq_pos:        .quad 0
vq:             .space Q_BYTES
hdrs:           .space 16 * MAX_QD
status:         .space MAX_QD
        .balign 4096
ring:           .space RING_MAX_BYTES
