/* pvh_inspect: prints what hvm_start_info says, one fact per line. */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        cmpl $HVM_START_MAGIC, (%ebx)
        je 1f
        PUTS32(badmagic)
        movl (%ebx), %eax
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit
1:      PUTS32(magic)
        movl (%ebx), %eax
        call puthex
        PUTS32(version)
        movl 4(%ebx), %eax
        call puthex
        call newline

        /* cmdline: <text> (at most 4 KiB of it). */
        PUTS32(cmdline)
        movl 24(%ebx), %esi
        testl %esi, %esi
        jz 2f
        cmpl $0, 28(%ebx)
        jne 2f
        movl $4096, %ecx
        call putsn
2:      call newline

        /* memmap ADDR SIZE TYPE */
        movl 40(%ebx), %esi
        movl 48(%ebx), %ecx
        cmpl $128, %ecx
        jbe 3f
        movl $128, %ecx
3:      jecxz 5f
4:      PUTS32(memmap)
        movl (%esi), %eax
        movl 4(%esi), %edx
        call puthex64
        call space
        movl 8(%esi), %eax
        movl 12(%esi), %edx
        call puthex64
        call space
        movl 16(%esi), %eax
        call puthex
        call newline
        addl $24, %esi
        loop 4b

5:      /* module PADDR SIZE fnv1a HASH */
        movl 16(%ebx), %edi     /* modlist_paddr */
        movl 12(%ebx), %ecx     /* nr_modules */
        cmpl $16, %ecx
        jbe 6f
        movl $16, %ecx
6:      jecxz 9f
7:      pushl %ecx
        PUTS32(module)
        movl (%edi), %eax
        movl 4(%edi), %edx
        call puthex64
        call space
        movl 8(%edi), %eax
        movl 12(%edi), %edx
        call puthex64
        /* Hash only modules entirely below 4 GiB. */
        cmpl $0, 4(%edi)
        jne 8f
        cmpl $0, 12(%edi)
        jne 8f
        movl (%edi), %esi
        movl 8(%edi), %ecx
        addl %esi, %ecx
        jc 8f
        movl 8(%edi), %ecx
        PUTS32(fnv)
        call fnv1a
        call puthex
8:      call newline
        addl $32, %edi
        popl %ecx
        loop 7b

9:      PUTS32(done)
        movl $EXIT_PASS, %eax
        jmp exit

        .section .rodata
badmagic: .asciz "pvh_inspect: bad magic "
magic:  .asciz "pvh_inspect: magic "
version: .asciz " version "
cmdline: .asciz "cmdline: "
memmap: .asciz "memmap "
module: .asciz "module "
fnv:    .asciz " fnv1a "
done:   .asciz "pvh_inspect: done\n"

#include "lib32.S"
