/* demo: the README's demo guest. Prints a banner and the RAM size from
   the PVH memory map, then exits with EXIT_PASS. */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        PUTS32(booted)
        cmpl $HVM_START_MAGIC, (%ebx)
        jne 4f
        /* Sum the RAM (type 1) entries into %edi:%ebp. */
        xorl %edi, %edi
        xorl %ebp, %ebp
        movl 40(%ebx), %esi     /* memmap_paddr */
        movl 48(%ebx), %ecx     /* memmap_entries */
        cmpl $128, %ecx
        jbe 1f
        movl $128, %ecx
1:      jecxz 3f
2:      cmpl $1, 16(%esi)
        jne 5f
        addl 8(%esi), %ebp
        adcl 12(%esi), %edi
5:      addl $24, %esi
        loop 2b
3:      /* Round up to MiB. */
        movl %ebp, %eax
        movl %edi, %edx
        addl $0xfffff, %eax
        adcl $0, %edx
        shrdl $20, %edx, %eax
        PUTS32(prefix)
        call putdec
        PUTS32(mib)
        jmp 6f
4:      PUTS32(nostart)
6:      PUTS32(off)
        movl $EXIT_PASS, %eax
        jmp exit

        .section .rodata
booted: .asciz "bhyve demo guest: booted\n"
prefix: .asciz "bhyve demo guest: "
mib:    .asciz " MiB of RAM\n"
nostart: .asciz "bhyve demo guest: no hvm_start_info\n"
off:    .asciz "bhyve demo guest: powering off\n"

#include "lib32.S"
