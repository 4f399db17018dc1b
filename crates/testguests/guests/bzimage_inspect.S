/* bzimage_inspect: a bzImage guest, entered in long mode at startup_64
   with %rsi = boot_params; prints what boot_params says. */
#include "common.h"
#include "bzimage_header.S"
        .globl startup_64
startup_64:
        cli
        leaq stack64_top(%rip), %rsp
        movq %rsi, %rbx
        PUTS64(hdr)
        movzbl 0x210(%rbx), %eax        /* hdr.type_of_loader */
        call puthex64q
        PUTS64(version)
        movzwl 0x206(%rbx), %eax        /* hdr.version */
        call puthex64q
        call newline64

        PUTS64(cmdline)
        movl 0x228(%rbx), %esi          /* hdr.cmd_line_ptr */
        movl 0xc8(%rbx), %eax           /* ext_cmd_line_ptr */
        shlq $32, %rax
        orq %rax, %rsi
        testq %rsi, %rsi
        jz 1f
        movl $4096, %ecx
        call putsn64
1:      call newline64

        movl 0x21c(%rbx), %ecx          /* hdr.ramdisk_size */
        movl 0xc4(%rbx), %eax           /* ext_ramdisk_size */
        shlq $32, %rax
        orq %rax, %rcx
        jz 2f
        movl 0x218(%rbx), %esi          /* hdr.ramdisk_image */
        movl 0xc0(%rbx), %eax           /* ext_ramdisk_image */
        shlq $32, %rax
        orq %rax, %rsi
        PUTS64(ramdisk)
        movq %rsi, %rax
        call puthex64q
        call space64
        movq %rcx, %rax
        call puthex64q
        PUTS64(fnv)
        call fnv1a64
        call puthex64q
        call newline64

2:      movzbl 0x1e8(%rbx), %ecx        /* e820_entries */
        cmpl $128, %ecx
        jbe 3f
        movl $128, %ecx
3:      leaq 0x2d0(%rbx), %rdi          /* e820_table: 20-byte entries */
        testl %ecx, %ecx
        jz 5f
4:      PUTS64(e820)
        movq (%rdi), %rax
        call puthex64q
        call space64
        movq 8(%rdi), %rax
        call puthex64q
        call space64
        movl 16(%rdi), %eax
        call puthex64q
        call newline64
        addq $20, %rdi
        decl %ecx
        jnz 4b

5:      PUTS64(done)
        movl $EXIT_PASS, %eax
        jmp exit64

        .section .rodata
hdr:    .asciz "bzimage_inspect: type_of_loader "
version: .asciz " version "
cmdline: .asciz "cmdline: "
ramdisk: .asciz "ramdisk "
fnv:    .asciz " fnv1a "
e820:   .asciz "e820 "
done:   .asciz "bzimage_inspect: done\n"

#include "lib64.S"
