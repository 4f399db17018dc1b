/* triple_fault: an exception with an empty IDT escalates to a shutdown. */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        PUTS32(msg)
        lidt empty_idt
        xorl %ecx, %ecx
        divl %ecx               /* #DE -> #DF -> triple fault */
        PUTS32(still)
        movl $EXIT_FAIL, %eax
        jmp exit

        .section .rodata
        .balign 8
empty_idt:
        .word 0
        .long 0
msg:    .asciz "triple_fault: faulting\n"
still:  .asciz "triple_fault: still running\n"

#include "lib32.S"
