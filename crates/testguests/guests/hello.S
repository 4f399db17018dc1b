/* hello: prints one line and exits with EXIT_PASS. */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        PUTS32(msg)
        movl $EXIT_PASS, %eax
        jmp exit

        .section .rodata
msg:    .asciz "Hello from a bhyve test guest\n"

#include "lib32.S"
