/*
 * mptable: finds the Intel MP floating pointer in the BIOS area
 * (0xf0000-0xfffff, 16-byte steps, as a kernel scans it), checks both
 * checksums of the configuration table and prints its entries.
 */
#include "common.h"

#define SCAN_START      0xf0000
#define SCAN_END        0x100000
#define MP_SIG          0x5f504d5f      /* "_MP_" */
#define PCMP_SIG        0x504d4350      /* "PCMP" */
#define HEADER_LEN      44

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp

        movl $SCAN_START, %esi
1:      cmpl $MP_SIG, (%esi)
        je found
        addl $16, %esi
        cmpl $SCAN_END, %esi
        jb 1b
        PUTS32(s_none)
        movl $EXIT_PASS, %eax
        jmp exit

found:  /* %esi = floating pointer. */
        movl $16, %ecx
        call sum8
        testb %al, %al
        jnz bad_fp
        PUTS32(s_at)
        movl %esi, %eax
        call puthex
        PUTS32(s_table)
        movl 4(%esi), %edi      /* configuration table */
        movl %edi, %eax
        call puthex
        call newline
        /* The header and its base table must lie inside the BIOS area. */
        cmpl $SCAN_START, %edi
        jb bad_table
        cmpl $(SCAN_END - HEADER_LEN), %edi
        ja bad_table
        cmpl $PCMP_SIG, (%edi)
        jne bad_table
        movzwl 4(%edi), %ecx    /* base table length */
        cmpl $HEADER_LEN, %ecx
        jb bad_table
        leal (%edi,%ecx), %edx
        movzwl 40(%edi), %eax   /* extended table length */
        addl %edx, %eax
        cmpl $SCAN_END, %eax
        ja bad_table
        pushl %esi
        movl %edi, %esi
        call sum8               /* base table, its checksum included */
        popl %esi
        testb %al, %al
        jnz bad_sum
        pushl %esi
        movl %edx, %esi
        movzwl 40(%edi), %ecx
        call sum8               /* extended table */
        popl %esi
        addb 42(%edi), %al
        jnz bad_sum
        PUTS32(s_sums)

        /* Entries: %ebx walks them, %ecx counts down, %ebp counts CPUs. */
        leal HEADER_LEN(%edi), %ebx
        movzwl 34(%edi), %ecx
        xorl %ebp, %ebp
next:   testl %ecx, %ecx
        jz done
        movzbl (%ebx), %eax
        cmpl $0, %eax
        je cpu
        cmpl $1, %eax
        je bus
        cmpl $2, %eax
        je ioapic
        cmpl $4, %eax
        ja bad_table
        /* 3 and 4: ioint/lint TYPE FLAGS BUS IRQ APIC PIN */
        cmpl $3, %eax
        jne 1f
        PUTS32(s_ioint)
        jmp 2f
1:      PUTS32(s_lint)
2:      movzbl 1(%ebx), %eax
        call puthex
        call space
        movzwl 2(%ebx), %eax
        call puthex
        call space
        movzbl 4(%ebx), %eax
        call puthex
        call space
        movzbl 5(%ebx), %eax
        call puthex
        call space
        movzbl 6(%ebx), %eax
        call puthex
        call space
        movzbl 7(%ebx), %eax
        call puthex
        call newline
        addl $8, %ebx
        jmp advance
cpu:    PUTS32(s_cpuid)
        movzbl 1(%ebx), %eax
        call puthex
        PUTS32(s_flags)
        movzbl 3(%ebx), %eax
        call puthex
        call newline
        incl %ebp
        addl $20, %ebx
        jmp advance
bus:    PUTS32(s_busid)
        movzbl 1(%ebx), %eax
        call puthex
        call space
        pushl %esi
        pushl %ecx
        leal 2(%ebx), %esi
        movl $6, %ecx
        call putsn
        popl %ecx
        popl %esi
        call newline
        addl $8, %ebx
        jmp advance
ioapic: PUTS32(s_ioapicid)
        movzbl 1(%ebx), %eax
        call puthex
        call space
        movl 4(%ebx), %eax
        call puthex
        call newline
        addl $8, %ebx
advance:
        decl %ecx
        /* Stay inside the base table. */
        movzwl 4(%edi), %eax
        addl %edi, %eax
        cmpl %eax, %ebx
        ja bad_table
        jmp next

done:   PUTS32(s_mptable)
        movl %ebp, %eax
        call puthex
        PUTS32(s_cpus)
        movl $EXIT_PASS, %eax
        jmp exit

bad_fp: PUTS32(s_badfp)
        jmp fail
bad_sum:
        PUTS32(s_badsum)
        jmp fail
bad_table:
        PUTS32(s_badtable)
fail:   movl $EXIT_FAIL, %eax
        jmp exit

/* sum8: byte sum of %ecx bytes at %esi in %al (other registers kept). */
sum8:
        pushl %esi
        pushl %ecx
        pushl %edx
        xorl %eax, %eax
        jecxz 2f
1:      movzbl (%esi), %edx
        addl %edx, %eax
        incl %esi
        decl %ecx
        jnz 1b
2:      popl %edx
        popl %ecx
        popl %esi
        ret

        .section .rodata
s_none:   .asciz "mptable: none\n"
s_at:     .asciz "mptable: at "
s_table:  .asciz " table "
s_sums:   .asciz "mptable: checksums ok\n"
s_ioint:  .asciz "ioint "
s_lint:   .asciz "lint "
s_cpuid:  .asciz "cpu "
s_flags:  .asciz " flags "
s_busid:  .asciz "bus "
s_ioapicid: .asciz "ioapic "
s_mptable: .asciz "mptable: "
s_cpus:   .asciz " cpus\n"
s_badfp:  .asciz "mptable: bad floating pointer checksum\n"
s_badsum: .asciz "mptable: bad table checksum\n"
s_badtable: .asciz "mptable: malformed table\n"

#include "lib32.S"
