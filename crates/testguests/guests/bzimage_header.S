/*
 * Boot sector and Linux setup header (boot protocol 2.15) of a bzImage
 * with one setup sector and a 64-bit entry point. Real-mode setup code
 * is absent: only 64-bit loaders (Linux boot protocol, 64-bit entry) can
 * boot these images.
 */
        .section .setup, "a"
        .org 0x1f1
        .byte 1                 /* setup_sects */
        .word 0                 /* root_flags */
        .long __syssize         /* syssize, from the linker script */
        .word 0                 /* ram_size */
        .word 0xffff            /* vid_mode: normal */
        .word 0                 /* root_dev */
        .word 0xaa55            /* boot_flag */
        .org 0x200
        .byte 0xeb, 0x26c - 0x202 /* jump over the header: it ends at 0x26c */
        .ascii "HdrS"
        .word 0x020f            /* version */
        .long 0                 /* realmode_swtch */
        .word 0x1000            /* start_sys_seg */
        .word 0                 /* kernel_version */
        .byte 0                 /* type_of_loader */
        .byte 0x01              /* loadflags: LOADED_HIGH */
        .word 0                 /* setup_move_size */
        .long 0x100000          /* code32_start */
        .long 0, 0              /* ramdisk_image, ramdisk_size */
        .long 0                 /* bootsect_kludge */
        .word 0                 /* heap_end_ptr */
        .byte 0, 0              /* ext_loader_ver, ext_loader_type */
        .long 0                 /* cmd_line_ptr */
        .long 0x7fffffff        /* initrd_addr_max */
        .long 0x200000          /* kernel_alignment */
        .byte 0, 0              /* relocatable_kernel, min_alignment */
        .org 0x236
        .word 0x0001            /* xloadflags: XLF_KERNEL_64 */
        .long 2047              /* cmdline_size */
        .long 0                 /* hardware_subarch */
        .quad 0                 /* hardware_subarch_data */
        .long 0, 0              /* payload_offset, payload_length */
        .quad 0                 /* setup_data */
        .quad 0x100000          /* pref_address */
        .org 0x260
        .long 0x10000           /* init_size */
        .long 0                 /* handover_offset */
        .long 0                 /* kernel_info_offset */
        .org 0x400

        /* startup_32 (load address + 0): unsupported, just stop. */
        .section .text.head, "ax"
        .code32
startup_32:
        cli
        hlt
        jmp startup_32
        .org 0x200
        .code64
