/*
 * smp: starts the application processors with INIT + SIPI + SIPI, lets
 * each AP mark its local APIC ID, waits (bounded by the TSC) until the
 * number of CPUs given as "cpus=N" on the command line checked in, and
 * prints them sorted by APIC ID.
 */
#include "common.h"

#define APIC_BASE       0xfee00000
#define APIC_ID         (APIC_BASE + 0x20)
#define APIC_SVR        (APIC_BASE + 0xf0)
#define APIC_ICR_LO     (APIC_BASE + 0x300)
#define APIC_ICR_HI     (APIC_BASE + 0x310)
#define ICR_BUSY        0x1000
/* All excluding self; INIT, level assert. */
#define ICR_INIT        0x000c4500
/* All excluding self; start-up at vector TRAMPOLINE >> 12. */
#define ICR_SIPI        (0x000c4600 | (TRAMPOLINE >> 12))
/* Real-mode trampoline: free low memory in both bhyve's and QEMU's layout. */
#define TRAMPOLINE      0x10000
#define MAX_CPUS        255
/* Timeout: 2^34 TSC ticks (several seconds at any TSC rate). */
#define TIMEOUT_TSC_HI  4

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
1:      call parse_cpus
        movl %eax, expected
        PUTS32(expecting)
        call puthex
        PUTS32(cpus_nl)

        movl APIC_ID, %eax
        shrl $24, %eax
        movb $1, present(%eax)
        cmpl $1, expected
        je report

        movl $0x1ff, APIC_SVR   /* software-enable the local APIC */
        movl $tramp_start, %esi
        movl $TRAMPOLINE, %edi
        movl $(tramp_end - tramp_start), %ecx
        cld
        rep movsb

        call icr_wait
        movl $0, APIC_ICR_HI
        movl $ICR_INIT, APIC_ICR_LO
        movl $10000, %ecx
        call delay
        call icr_wait
        movl $ICR_SIPI, APIC_ICR_LO
        movl $200, %ecx
        call delay
        call icr_wait
        movl $ICR_SIPI, APIC_ICR_LO

        rdtsc
        movl %eax, %edi
        movl %edx, %ebp
2:      movl checked_in, %eax
        incl %eax               /* the BSP */
        cmpl expected, %eax
        jae report
        rdtsc
        subl %edi, %eax
        sbbl %ebp, %edx
        cmpl $TIMEOUT_TSC_HI, %edx
        jb 2b

        PUTS32(timeout)
        movl checked_in, %eax
        incl %eax
        call puthex
        PUTS32(of)
        movl expected, %eax
        call puthex
        PUTS32(checked)
        movl $EXIT_SMP_TIMEOUT, %eax
        jmp exit

report: /* "cpu N apic M" for each present APIC ID, in order. */
        xorl %ebx, %ebx         /* APIC ID */
        xorl %edi, %edi         /* CPU number */
3:      cmpb $0, present(%ebx)
        je 4f
        PUTS32(cpu)
        movl %edi, %eax
        call puthex
        PUTS32(apic)
        movl %ebx, %eax
        call puthex
        call newline
        incl %edi
4:      incl %ebx
        cmpl $256, %ebx
        jb 3b
        PUTS32(smp)
        movl %edi, %eax
        call puthex
        PUTS32(online)
        movl $EXIT_PASS, %eax
        jmp exit

/* icr_wait: waits until the previous IPI was delivered. */
icr_wait:
        testl $ICR_BUSY, APIC_ICR_LO
        jnz icr_wait
        ret

/* delay: spins %ecx iterations. */
delay:
        decl %ecx
        jnz delay
        ret

/* parse_cpus: %esi = command line or 0; returns N of "cpus=N" in %eax,
   1 without one; exits with EXIT_BAD_CMDLINE on a malformed N. */
parse_cpus:
        movl $1, %eax
        testl %esi, %esi
        jz 9f
1:      cmpb $0, (%esi)
        je 9f
        cmpl $0x73757063, (%esi)        /* "cpus" */
        jne 2f
        cmpb $'=', 4(%esi)
        je 3f
2:      incl %esi
        jmp 1b
3:      addl $5, %esi
        xorl %eax, %eax
        xorl %ecx, %ecx
4:      movzbl (%esi), %edx
        subl $'0', %edx
        cmpl $9, %edx
        ja 5f
        imull $10, %eax, %eax
        addl %edx, %eax
        incl %ecx
        incl %esi
        cmpl $MAX_CPUS, %eax
        ja 8f
        jmp 4b
5:      testl %ecx, %ecx
        jz 8f
        testl %eax, %eax
        jz 8f
9:      ret
8:      PUTS32(badcmd)
        movl $EXIT_BAD_CMDLINE, %eax
        jmp exit

/* The APs continue here in protected mode, on the AP GDT. */
ap_entry32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl APIC_ID, %eax
        shrl $24, %eax
        movb $1, present(%eax)  /* each AP writes its own slot */
        lock incl checked_in
1:      cli
        hlt
        jmp 1b

/* Copied to TRAMPOLINE; the SIPI starts the APs here in real mode with
   CS = TRAMPOLINE >> 4, IP = 0. */
        .code16
tramp_start:
        cli
        movw %cs, %ax
        movw %ax, %ds
        lgdtl (tramp_gdtr - tramp_start)
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x08, $ap_entry32
tramp_gdtr:
        .word ap_gdt_end - ap_gdt - 1
        .long ap_gdt
tramp_end:
        .code32

        .section .rodata
        .balign 8
ap_gdt:
        .quad 0
        .quad 0x00cf9b000000ffff        /* 0x08: flat 32-bit code */
        .quad 0x00cf93000000ffff        /* 0x10: flat data */
ap_gdt_end:
expecting: .asciz "smp: expecting "
cpus_nl: .asciz " cpus\n"
timeout: .asciz "smp: timeout: "
of:     .asciz " of "
checked: .asciz " cpus checked in\n"
cpu:    .asciz "cpu "
apic:   .asciz " apic "
smp:    .asciz "smp: "
online: .asciz " cpus online\n"
badcmd: .asciz "smp: bad cpus= on the command line\n"

        .data
        .balign 4
expected: .long 1
checked_in: .long 0

        .bss
present: .space 256

#include "lib32.S"
