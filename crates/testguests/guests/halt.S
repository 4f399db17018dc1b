/* halt: interrupts off, then hlt: the VMM sees a halted machine. */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        PUTS32(msg)
1:      cli
        hlt
        jmp 1b

        .section .rodata
msg:    .asciz "halt: halting\n"

#include "lib32.S"
