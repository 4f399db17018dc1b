/*
 * virtio_net_bench: the virtio-net benchmark guest of `bhyve-bench net`.
 *
 * Drives the first 1af4:1000 function of bus 0 through the legacy
 * transport (bench64.S: CPL3, polled used ring, no interrupts) with no
 * feature taken, so every frame carries the 10-byte legacy header. The
 * receive queue is set up without buffers (frames from the host wait or
 * are dropped by the device); the transmit queue sends "frames=N"
 * (default 100000) minimum-size Ethernet frames (60 bytes: to
 * 02:00:00:00:00:02 from 02:00:00:00:00:01, EtherType 0x88b5, local
 * experimental, zero payload), keeping half the queue (at most 128
 * frames) in flight. A frame is two descriptors, header and frame, as
 * Linux's legacy driver lays them out; all frames share both buffers.
 *
 * Prints "BENCH tx-60b COUNT frames BYTES bytes CYCLES tsc KICKS kicks".
 * With "rxframes=N" it then posts receive buffers (10-byte header + 1514
 * bytes, shared by all, half the queue up to 128 in flight), prints
 * "virtio_net_bench: receiving" (the host starts sending 60-byte frames
 * into the tap) and reports "BENCH rx-60b COUNT frames …" for N frames,
 * timed from the first to the last (receive mode of vq_run: fewer if ~3 s
 * pass without one). Ends "virtio_net_bench: done", EXIT_PASS. The host
 * side (the tap's rx_packets) confirms the transmitted frames left.
 */
#include "common.h"
#include "bench64.S"

#define NET_ID          0x10001af4
#define HDR_LEN         10
#define FRAME_LEN       60
#define MAX_INFLIGHT    128
#define RX_BUF_LEN      1514
#define RX_IDLE         0x200000000     /* ~3 s of TSC without a frame ends it */

        .text
bench_main:
        leaq k_frames(%rip), %rdi
        movl $100000, %esi
        call opt_dec
        movq %rax, phase_tx+P_COUNT(%rip)

        movl $NET_ID, %edi
        call pci_find
        testl %eax, %eax
        jnz 1f
        leaq s_none(%rip), %rsi
        jmp fail64
1:      movl %eax, %edi
        xorl %esi, %esi
        call vl_init
        xorl %edi, %edi
        leaq ring_rx(%rip), %rsi
        leaq vq_rx(%rip), %rdx
        call vq_setup
        movl $1, %edi
        leaq ring_tx(%rip), %rsi
        leaq vq_tx(%rip), %rdx
        call vq_setup
        movl vq_tx+Q_SIZE(%rip), %eax
        shrl $1, %eax                   /* two descriptors per frame */
        jnz 2f
        leaq s_qsize_small(%rip), %rsi
        jmp fail64
2:      cmpl $MAX_INFLIGHT, %eax
        jbe 3f
        movl $MAX_INFLIGHT, %eax
3:      movq %rax, phase_tx+P_QD(%rip)
        call vl_driver_ok
        leaq s_start(%rip), %rsi
        call puts64

        leaq phase_tx(%rip), %rdi
        call vq_run

        leaq k_rxframes(%rip), %rdi     /* receive: only when asked */
        xorl %esi, %esi
        call opt_dec
        testq %rax, %rax
        jz 5f
        movq %rax, phase_rx+P_COUNT(%rip)
        movl vq_rx+Q_SIZE(%rip), %eax
        shrl $1, %eax
        jnz 6f
        leaq s_qsize_small(%rip), %rsi
        jmp fail64
6:      cmpl $MAX_INFLIGHT, %eax
        jbe 7f
        movl $MAX_INFLIGHT, %eax
7:      movq %rax, phase_rx+P_QD(%rip)
        leaq s_receiving(%rip), %rsi
        call puts64
        leaq phase_rx(%rip), %rdi
        call vq_run
5:      leaq s_done(%rip), %rsi
        call puts64
        movl $EXIT_PASS, %eax
        jmp exit64

/* tx_submit: %rdi = slot: header and frame descriptors at 2 * slot. */
tx_submit:
        leaq (%rdi,%rdi), %rax
        movq %rax, %rcx
        shlq $4, %rcx
        addq vq_tx+Q_DESC(%rip), %rcx
        leaq hdr(%rip), %rdx
        movq %rdx, (%rcx)
        movl $HDR_LEN, 8(%rcx)
        movw $VRING_DESC_F_NEXT, 12(%rcx)
        leal 1(%rax), %edx
        movw %dx, 14(%rcx)
        leaq frame(%rip), %rdx
        movq %rdx, 16(%rcx)
        movl $FRAME_LEN, 24(%rcx)
        movl $0, 28(%rcx)               /* flags, next */
        ret

/* tx_complete, rx_complete: nothing to check (the host counts what left;
   received bytes are not looked at). */
tx_complete:
rx_complete:
        ret

/* rx_submit: %rdi = slot: header and frame buffers (device-writable) at
   2 * slot, shared by every slot. */
rx_submit:
        leaq (%rdi,%rdi), %rax
        movq %rax, %rcx
        shlq $4, %rcx
        addq vq_rx+Q_DESC(%rip), %rcx
        leaq rx_hdr(%rip), %rdx
        movq %rdx, (%rcx)
        movl $HDR_LEN, 8(%rcx)
        movw $(VRING_DESC_F_NEXT | VRING_DESC_F_WRITE), 12(%rcx)
        leal 1(%rax), %edx
        movw %dx, 14(%rcx)
        leaq rx_buf(%rip), %rdx
        movq %rdx, 16(%rcx)
        movl $RX_BUF_LEN, 24(%rcx)
        movw $VRING_DESC_F_WRITE, 28(%rcx)
        movw $0, 30(%rcx)
        ret

        .section .rodata
k_frames:       .asciz "frames="
k_rxframes:     .asciz "rxframes="
s_rx:           .asciz "rx-60b"
s_receiving:    .asciz "virtio_net_bench: receiving\n"
s_frames:       .asciz "frames"
s_tx:           .asciz "tx-60b"
s_none:         .asciz "virtio_net_bench: no 1af4:1000 function on bus 0\n"
s_qsize_small:  .asciz "virtio_net_bench: transmit queue of one descriptor\n"
s_start:        .asciz "virtio_net_bench: running\n"
s_done:         .asciz "virtio_net_bench: done\n"

        .data
        .balign 8
phase_tx:
        .quad s_tx, 0, 0, FRAME_LEN, tx_submit, tx_complete, vq_tx, s_frames, 0
phase_rx:
        .quad s_rx, 0, 0, FRAME_LEN, rx_submit, rx_complete, vq_rx, s_frames, RX_IDLE
hdr:    .space 16               /* virtio_net_hdr: no offload */
frame:  .byte 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5
        .space FRAME_LEN - 14

        .bss
        .balign 8
rx_hdr:         .space 16
rx_buf:         .space RX_BUF_LEN
        .balign 8
vq_rx:          .space Q_BYTES
vq_tx:          .space Q_BYTES
        .balign 4096
ring_rx:        .space RING_MAX_BYTES
        .balign 4096
ring_tx:        .space RING_MAX_BYTES
