/*
 * pio_loop: the port-I/O benchmark guest. Runs "iterations=N" (decimal, on
 * the command line; 0 without it) rounds of `out 0xe0, al; dec; jnz` —
 * pc-testdev's scratch port, so every round is one exit that a device
 * handles — then exits with EXIT_PASS. bhyve-bench times it against a raw
 * KVM loop running the same three instructions.
 */
#include "common.h"
#define SCRATCH_PORT 0xe0

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        xorl %esi, %esi
        cmpl $HVM_START_MAGIC, (%ebx)
        jne 1f
        cmpl $0, 28(%ebx)       /* cmdline above 4 GiB: ignore */
        jne 1f
        movl 24(%ebx), %esi
1:      call parse_iterations
        movl %eax, %ecx
        testl %ecx, %ecx
        jz 3f
2:      outb %al, $SCRATCH_PORT
        decl %ecx
        jnz 2b
3:      movl $EXIT_PASS, %eax
        jmp exit

/* parse_iterations: %esi = command line or 0; returns N of
   "iterations=N" in %eax (0 without one; stops at the first non-digit). */
parse_iterations:
        xorl %eax, %eax
        testl %esi, %esi
        jz 9f
1:      cmpb $0, (%esi)
        je 9f
        cmpl $0x72657469, (%esi)        /* "iter" */
        jne 2f
        cmpl $0x6f697461, 4(%esi)       /* "atio" */
        jne 2f
        movl 8(%esi), %edx              /* "ns=": low three bytes */
        andl $0xffffff, %edx
        cmpl $0x3d736e, %edx
        je 3f
2:      incl %esi
        jmp 1b
3:      addl $11, %esi
4:      movzbl (%esi), %edx
        subl $'0', %edx
        cmpl $9, %edx
        ja 9f
        imull $10, %eax, %eax
        addl %edx, %eax
        incl %esi
        jmp 4b
9:      ret

#include "lib32.S"
