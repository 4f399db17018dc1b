/*
 * acpi_tables: finds the ACPI tables as an OS does and checks them.
 *
 * 1. The RSDP: the first KiB of the EBDA (segment at 0x40e), then the
 *    BIOS area 0xe0000-0xfffff, in 16-byte steps. Its ACPI 1.0 checksum
 *    and, from revision 2, its extended checksum.
 * 2. The RSDT, then the XSDT, which must list the same tables in the
 *    same order (all below 4 GiB).
 * 3. Every listed table, the FACS and the DSDT: signature, a sane length
 *    and the checksum. Each table's fields that say where the platform's
 *    devices are (FADT, MADT, HPET, MCFG, SPCR) are printed for the host
 *    test to compare; the DSDT is dumped in hex for iasl.
 * 4. The devices behind the tables answer there: the FADT's PM timer
 *    advances, PWRBTN_EN sticks in its PM1_EN, ACPI_ENABLE/DISABLE through
 *    its SMI_CMD switch SCI_EN in its PM1a_CNT; the HPET table's base
 *    reads capabilities equal to its block ID; MCFG's bus 0 reads the
 *    same IDs as config mechanism #1 for every slot.
 * 5. With "cpus=N" on the command line, the MADT must list exactly N
 *    enabled local APICs.
 *
 * Pass: status 33. A missing or broken table, or the wrong CPU count:
 * one "acpi: ..." line naming it, status 35. Table lengths are bounded
 * (MAX_TABLE) so a wild pointer cannot keep the guest summing forever.
 */
#include "common.h"

#define EBDA_SEG_PTR    0x40e
#define EBDA_SCAN       1024
#define BIOS_START      0xe0000
#define BIOS_END        0x100000
#define RSDP_SIG_LO     0x20445352      /* "RSD " */
#define RSDP_SIG_HI     0x20525450      /* "PTR " */
#define RSDP_V1_LEN     20
#define RSDP_MAX_LEN    4096
#define SIG_RSDT        0x54445352
#define SIG_XSDT        0x54445358
#define SIG_FACP        0x50434146
#define SIG_APIC        0x43495041
#define SIG_HPET        0x54455048
#define SIG_MCFG        0x4746434d
#define SIG_SPCR        0x52435053
#define SIG_FACS        0x53434146
#define SIG_DSDT        0x54445344
#define HDR_LEN         36
#define MAX_TABLE       0x10000
#define MAX_ENTRIES     32
#define FADT_MIN_LEN    244     /* ACPI 2.0: through X_GPE1_BLK */
#define FACS_MIN_LEN    64
#define MADT_FIXED      44
#define HPET_MIN_LEN    56
#define MCFG_FIXED      44
#define MCFG_ENTRY      16
#define SPCR_MIN_LEN    80
#define HEX_PER_LINE    32
#define MAX_CPUS        255
#define PM_TMR_TRIES    1000
#define PWRBTN_EN       0x100
#define SCI_EN          0x1
#define CONF1_ADDR      0xcf8
#define CONF1_DATA      0xcfc
#define CONF1_ENABLE    0x80000000

/* Prints string s, then the value at m as 0x<hex>. */
#define SHOW32(s, m)    PUTS32(s); movl m, %eax; call puthex
#define SHOW16(s, m)    PUTS32(s); movzwl m, %eax; call puthex
#define SHOW8(s, m)     PUTS32(s); movzbl m, %eax; call puthex
#define SHOWGAS(s, m)   PUTS32(s); leal m, %eax; call putgas

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
        cmpl $0, 28(%ebx)       /* command line above 4 GiB: ignore */
        jne 1f
        movl 24(%ebx), %esi
1:      call parse_cpus
        movl %eax, want_cpus

        /* 1. The RSDP: EBDA first (when the BDA names one), then the BIOS area. */
        movzwl EBDA_SEG_PTR, %esi
        shll $4, %esi
        cmpl $0x400, %esi
        jbe 2f
        leal EBDA_SCAN(%esi), %edx
        call scan_rsdp
        jnc rsdp_found
2:      movl $BIOS_START, %esi
        movl $BIOS_END, %edx
        call scan_rsdp
        jnc rsdp_found
        PUTS32(s_no_rsdp)
        jmp fail

rsdp_found:
        movl $RSDP_V1_LEN, %ecx
        call sum8
        testb %al, %al
        movl $s_bad_rsdp_sum, %edi
        jnz fail_at
        movzbl 15(%esi), %eax
        movl %eax, rsdp_rev
        movl 16(%esi), %eax
        movl %eax, rsdt
        cmpl $2, rsdp_rev
        jb 3f
        movl 20(%esi), %ecx
        movl $s_bad_rsdp_len, %edi
        cmpl $(RSDP_V1_LEN + 16), %ecx
        jb fail_at
        cmpl $RSDP_MAX_LEN, %ecx
        ja fail_at
        call sum8
        testb %al, %al
        movl $s_bad_rsdp_xsum, %edi
        jnz fail_at
        movl $s_above_4g, %edi
        cmpl $0, 28(%esi)
        jne fail_at
        movl 24(%esi), %eax
        movl %eax, xsdt
3:      PUTS32(s_rsdp)
        movl %esi, %eax
        call puthex
        PUTS32(s_rev)
        movl rsdp_rev, %eax
        call puthex
        PUTS32(s_oem)
        pushl %esi
        addl $9, %esi
        movl $6, %ecx
        call putsn
        popl %esi
        PUTS32(s_rsdt)
        movl rsdt, %eax
        call puthex
        PUTS32(s_xsdt)
        movl xsdt, %eax
        call puthex
        call newline

        /* 2. RSDT entries, then the XSDT's against them. */
        movl rsdt, %esi
        movl $SIG_RSDT, %edi
        call check_table
        subl $HDR_LEN, %ecx
        movl $s_bad_len, %edi
        testl $3, %ecx
        jnz fail_at
        shrl $2, %ecx
        cmpl $MAX_ENTRIES, %ecx
        ja fail_at
        movl %ecx, nentries
        xorl %ebx, %ebx
4:      cmpl nentries, %ebx
        jae 5f
        movl HDR_LEN(%esi,%ebx,4), %eax
        movl %eax, entries(,%ebx,4)
        incl %ebx
        jmp 4b
5:      cmpl $0, xsdt
        jne 6f
        cmpl $2, rsdp_rev
        jb walk                 /* ACPI 1.0: no XSDT */
        movl $s_no_xsdt, %edi
        jmp fail_at
6:      movl xsdt, %esi
        movl $SIG_XSDT, %edi
        call check_table
        subl $HDR_LEN, %ecx
        movl $s_bad_len, %edi
        testl $7, %ecx
        jnz fail_at
        shrl $3, %ecx
        movl $s_xsdt_differs, %edi
        cmpl nentries, %ecx
        jne fail_at
        xorl %ebx, %ebx
7:      cmpl nentries, %ebx
        jae 8f
        movl HDR_LEN(%esi,%ebx,8), %eax
        cmpl entries(,%ebx,4), %eax
        jne fail_at
        cmpl $0, (HDR_LEN + 4)(%esi,%ebx,8)
        jne fail_at
        incl %ebx
        jmp 7b
8:      PUTS32(s_same)

        /* 3. Every table. */
walk:   xorl %ebx, %ebx
1:      cmpl nentries, %ebx
        jae tables_done
        movl entries(,%ebx,4), %esi
        xorl %edi, %edi
        call check_table
        movl (%esi), %eax
        cmpl $SIG_FACP, %eax
        jne 2f
        call do_fadt
        jmp 9f
2:      cmpl $SIG_APIC, %eax
        jne 3f
        call do_madt
        jmp 9f
3:      cmpl $SIG_HPET, %eax
        jne 4f
        call do_hpet
        jmp 9f
4:      cmpl $SIG_MCFG, %eax
        jne 5f
        call do_mcfg
        jmp 9f
5:      cmpl $SIG_SPCR, %eax
        jne 9f
        call do_spcr
9:      incl %ebx
        jmp 1b

tables_done:
        cmpl $1, seen_fadt
        je 1f
        PUTS32(s_fadt_count)
        jmp fail
1:      cmpl $1, seen_madt
        je 2f
        PUTS32(s_madt_count)
        jmp fail
2:      movl want_cpus, %eax
        testl %eax, %eax
        jz 3f
        cmpl madt_cpus, %eax
        je 3f
        PUTS32(s_cpus_wrong)
        movl madt_cpus, %eax
        call puthex
        PUTS32(s_expected)
        movl want_cpus, %eax
        call puthex
        call newline
        jmp fail
3:      PUTS32(s_acpi)
        movl madt_cpus, %eax
        call puthex
        PUTS32(s_done)
        movl $EXIT_PASS, %eax
        jmp exit

/* fail_at: prints the message at %edi and the address %esi, fails. */
fail_at:
        pushl %esi
        movl %edi, %esi
        call puts
        popl %esi
        movl %esi, %eax
        call puthex
        call newline
fail:   movl $EXIT_FAIL, %eax
        jmp exit

/* scan_rsdp: looks for "RSD PTR " at 16-byte steps from %esi below %edx.
   CF clear and %esi = the RSDP when found; CF set otherwise. */
scan_rsdp:
1:      cmpl %edx, %esi
        jae 3f
        cmpl $RSDP_SIG_LO, (%esi)
        jne 2f
        cmpl $RSDP_SIG_HI, 4(%esi)
        je 4f
2:      addl $16, %esi
        jmp 1b
3:      stc
        ret
4:      clc
        ret

/* check_table: the table at %esi, signature %edi (0: any). Checks its
   length (HDR_LEN..MAX_TABLE, not wrapping past 4 GiB) and checksum and
   prints "table SIG ADDR len LEN rev R". Returns the length in %ecx;
   fails the run on a bad table. */
check_table:
        testl %esi, %esi
        jz 8f
        testl %edi, %edi
        jz 1f
        cmpl %edi, (%esi)
        jne 7f
1:      movl 4(%esi), %ecx
        cmpl $HDR_LEN, %ecx
        jb 6f
        cmpl $MAX_TABLE, %ecx
        ja 6f
        movl %esi, %eax
        addl %ecx, %eax
        jc 6f
        call sum8
        testb %al, %al
        jnz 5f
        PUTS32(s_table)
        pushl %ecx
        movl $4, %ecx
        call putsn
        popl %ecx
        call space
        movl %esi, %eax
        call puthex
        SHOW32(s_len, %ecx)
        SHOW8(s_rev, 8(%esi))
        call newline
        ret
5:      movl $s_bad_sum, %edi
        jmp fail_at
6:      movl $s_bad_len, %edi
        jmp fail_at
7:      movl $s_bad_sig, %edi
        jmp fail_at
8:      movl $s_null, %edi
        jmp fail_at

/* do_fadt: the FADT at %esi, %ecx long: its PM, reset and SCI fields,
   then the FACS and the DSDT it points at (the DSDT dumped in hex). */
do_fadt:
        incl seen_fadt
        movl $s_bad_len, %edi
        cmpl $FADT_MIN_LEN, %ecx
        jb fail_at
        SHOW16(s_fadt_sci, 46(%esi))
        SHOW32(s_smi_cmd, 48(%esi))
        SHOW8(s_acpi_enable, 52(%esi))
        SHOW8(s_acpi_disable, 53(%esi))
        call newline
        SHOW32(s_fadt_pm1a_evt, 56(%esi))
        SHOW32(s_pm1a_cnt, 64(%esi))
        SHOW32(s_pm_tmr, 76(%esi))
        SHOW32(s_gpe0, 80(%esi))
        call newline
        SHOW8(s_fadt_lengths, 88(%esi))
        SHOW8(s_sp, 89(%esi))
        SHOW8(s_sp, 91(%esi))
        SHOW8(s_sp, 92(%esi))
        call newline
        SHOW32(s_fadt_flags, 112(%esi))
        SHOW16(s_boot_arch, 109(%esi))
        SHOW8(s_century, 108(%esi))
        call newline
        SHOWGAS(s_fadt_reset, 116(%esi))
        SHOW8(s_value, 128(%esi))
        call newline
        SHOWGAS(s_fadt_x_pm1a_evt, 148(%esi))
        call newline
        SHOWGAS(s_fadt_x_pm1a_cnt, 172(%esi))
        call newline
        SHOWGAS(s_fadt_x_pm_tmr, 208(%esi))
        call newline
        SHOWGAS(s_fadt_x_gpe0, 220(%esi))
        call newline

        call check_pm_ports

        /* FACS and DSDT: 32-bit and X fields must agree where both are set. */
        movl $s_above_4g, %edi
        cmpl $0, 136(%esi)
        jne fail_at
        cmpl $0, 144(%esi)
        jne fail_at
        SHOW32(s_fadt_facs, 36(%esi))
        SHOW32(s_x_facs, 132(%esi))
        SHOW32(s_dsdt, 40(%esi))
        SHOW32(s_x_dsdt, 140(%esi))
        call newline
        movl 132(%esi), %eax
        movl 36(%esi), %edx
        movl $s_facs_differs, %edi
        call pick
        movl %eax, facs
        movl 140(%esi), %eax
        movl 40(%esi), %edx
        movl $s_dsdt_differs, %edi
        call pick
        movl %eax, dsdt

        pushl %esi
        movl facs, %esi
        movl $s_null, %edi
        testl %esi, %esi
        jz fail_at
        movl $s_facs_align, %edi
        testl $63, %esi
        jnz fail_at
        movl $s_bad_sig, %edi
        cmpl $SIG_FACS, (%esi)
        jne fail_at
        movl $s_bad_len, %edi
        cmpl $FACS_MIN_LEN, 4(%esi)
        jb fail_at
        PUTS32(s_facs)
        movl %esi, %eax
        call puthex
        SHOW32(s_len, 4(%esi))
        SHOW8(s_version, 32(%esi))
        call newline

        movl dsdt, %esi
        movl $SIG_DSDT, %edi
        call check_table
        call dump_hex
        popl %esi
        ret

/* check_pm_ports: the ports the FADT at %esi names must be live PM
   registers (an unclaimed port reads all ones and drops writes): the PM
   timer advances; PWRBTN_EN sticks in PM1_EN; ACPI_ENABLE to SMI_CMD sets
   SCI_EN in PM1a_CNT and ACPI_DISABLE clears it. */
check_pm_ports:
        pushal
        movl $s_bad_port, %edi
        cmpl $0xffff, 48(%esi)
        ja fail_at
        cmpl $0xfffd, 56(%esi)
        ja fail_at
        cmpl $0xffff, 64(%esi)
        ja fail_at
        cmpl $0xffff, 76(%esi)
        ja fail_at
        movl $s_tmr_stuck, %edi
        movl 76(%esi), %edx
        inl %dx, %eax
        movl %eax, %ebx
        movl $PM_TMR_TRIES, %ecx
1:      inl %dx, %eax
        cmpl %ebx, %eax
        jne 2f
        decl %ecx
        jnz 1b
        jmp fail_at
2:      movl $s_pm1_en, %edi
        movl 56(%esi), %edx
        movzbl 88(%esi), %eax   /* PM1_EN is the second half of the block */
        shrl $1, %eax
        addl %eax, %edx
        movw $PWRBTN_EN, %ax
        outw %ax, %dx
        inw %dx, %ax
        cmpw $PWRBTN_EN, %ax
        jne fail_at
        xorl %eax, %eax
        outw %ax, %dx
        movl $s_sci_en, %edi
        movl 48(%esi), %edx
        movb 52(%esi), %al
        outb %al, %dx
        movl 64(%esi), %edx
        inw %dx, %ax
        cmpw $0xffff, %ax
        je fail_at
        testw $SCI_EN, %ax
        jz fail_at
        movl 48(%esi), %edx
        movb 53(%esi), %al
        outb %al, %dx
        movl 64(%esi), %edx
        inw %dx, %ax
        testw $SCI_EN, %ax
        jnz fail_at
        PUTS32(s_pm_live)
        popal
        ret

/* pick: %eax = an X pointer, %edx = its 32-bit twin: the one that is
   set, failing (message %edi, address %esi) when both are and differ. */
pick:
        testl %eax, %eax
        jnz 1f
        movl %edx, %eax
        ret
1:      testl %edx, %edx
        jz 2f
        cmpl %edx, %eax
        jne fail_at
2:      ret

/* do_madt: the MADT at %esi, %ecx long: one line per entry; counts the
   enabled local APICs in madt_cpus. */
do_madt:
        incl seen_madt
        movl $s_bad_len, %edi
        cmpl $MADT_FIXED, %ecx
        jb fail_at
        SHOW32(s_madt, 36(%esi))
        SHOW32(s_flags, 40(%esi))
        call newline
        pushl %ebp
        leal MADT_FIXED(%esi), %edi
        leal (%esi,%ecx), %ebp
1:      cmpl %ebp, %edi
        jae 9f
        leal 2(%edi), %eax
        cmpl %ebp, %eax
        ja 8f
        movzbl 1(%edi), %edx
        cmpl $2, %edx
        jb 8f
        leal (%edi,%edx), %eax
        cmpl %ebp, %eax
        ja 8f
        movzbl (%edi), %eax
        cmpl $0, %eax
        je 2f
        cmpl $1, %eax
        je 3f
        cmpl $2, %eax
        je 4f
        cmpl $4, %eax
        je 5f
        SHOW8(s_entry, (%edi))
        SHOW8(s_entry_len, 1(%edi))
        call newline
        jmp 7f
2:      cmpl $8, %edx
        jb 8f
        SHOW8(s_lapic, 2(%edi))
        SHOW8(s_sp, 3(%edi))
        SHOW32(s_sp, 4(%edi))
        call newline
        testl $1, 4(%edi)
        jz 7f
        incl madt_cpus
        jmp 7f
3:      cmpl $12, %edx
        jb 8f
        SHOW8(s_ioapic, 2(%edi))
        SHOW32(s_sp, 4(%edi))
        SHOW32(s_sp, 8(%edi))
        call newline
        jmp 7f
4:      cmpl $10, %edx
        jb 8f
        SHOW8(s_iso, 2(%edi))
        SHOW8(s_sp, 3(%edi))
        SHOW32(s_sp, 4(%edi))
        SHOW16(s_sp, 8(%edi))
        call newline
        jmp 7f
5:      cmpl $6, %edx
        jb 8f
        SHOW8(s_nmi, 2(%edi))
        SHOW16(s_sp, 3(%edi))
        SHOW8(s_sp, 5(%edi))
        call newline
7:      addl %edx, %edi
        jmp 1b
8:      movl $s_bad_madt, %edi
        jmp fail_at
9:      popl %ebp
        ret

/* do_hpet: the HPET description table at %esi, %ecx long. */
do_hpet:
        movl $s_bad_len, %edi
        cmpl $HPET_MIN_LEN, %ecx
        jb fail_at
        SHOW32(s_hpet, 36(%esi))
        SHOWGAS(s_base, 40(%esi))
        SHOW8(s_number, 52(%esi))
        SHOW16(s_min_tick, 53(%esi))
        SHOW8(s_flags, 55(%esi))
        call newline
        /* The block there must be an HPET whose capabilities are the ID. */
        movl $s_hpet_not_there, %edi
        cmpb $0, 40(%esi)       /* system memory */
        jne fail_at
        cmpl $0, 48(%esi)
        jne fail_at
        movl 44(%esi), %eax
        movl (%eax), %eax
        cmpl 36(%esi), %eax
        jne fail_at
        PUTS32(s_hpet_live)
        ret

/* do_mcfg: one line per ECAM allocation of the MCFG at %esi, %ecx long. */
do_mcfg:
        movl $s_bad_len, %edi
        cmpl $MCFG_FIXED, %ecx
        jb fail_at
        pushl %ecx
        subl $MCFG_FIXED, %ecx
        testl $(MCFG_ENTRY - 1), %ecx
        jnz fail_at
        shrl $4, %ecx
        leal MCFG_FIXED(%esi), %edi
1:      testl %ecx, %ecx
        jz 2f
        PUTS32(s_mcfg)
        pushl %edx
        movl (%edi), %eax
        movl 4(%edi), %edx
        call puthex64
        popl %edx
        SHOW16(s_segment, 8(%edi))
        SHOW8(s_buses, 10(%edi))
        SHOW8(s_sp, 11(%edi))
        call newline
        cmpw $0, 8(%edi)        /* segment 0, from bus 0: compare bus 0 */
        jne 3f
        cmpb $0, 10(%edi)
        jne 3f
        call check_ecam
3:      addl $MCFG_ENTRY, %edi
        decl %ecx
        jmp 1b
2:      popl %ecx
        ret

/* check_ecam: function 0 of every slot on bus 0 reads the same ID
   through the ECAM allocation at %edi as through config mechanism #1;
   prints "pci SLOT ID" for the slots that answer. */
check_ecam:
        pushal
        movl $s_ecam_high, %esi
        cmpl $0, 4(%edi)
        jne 9f
        movl (%edi), %ebx       /* ECAM address of 00:00.0 */
        xorl %ecx, %ecx         /* slot */
1:      movl %ecx, %eax
        shll $11, %eax
        orl $CONF1_ENABLE, %eax
        movw $CONF1_ADDR, %dx
        outl %eax, %dx
        movw $CONF1_DATA, %dx
        inl %dx, %eax
        movl %ecx, %edx
        shll $15, %edx
        cmpl (%ebx,%edx), %eax
        jne 8f
        cmpl $0xffffffff, %eax
        je 2f
        PUTS32(s_pci)
        xchgl %eax, %ecx
        call puthex
        xchgl %eax, %ecx
        call space
        call puthex
        call newline
2:      incl %ecx
        cmpl $32, %ecx
        jb 1b
        popal
        ret
8:      movl $s_ecam_differs, %esi
9:      call puts
        movl %ecx, %eax
        call puthex
        call newline
        jmp fail

/* do_spcr: the console the SPCR at %esi (%ecx long) names. */
do_spcr:
        movl $s_bad_len, %edi
        cmpl $SPCR_MIN_LEN, %ecx
        jb fail_at
        SHOW8(s_spcr, 36(%esi))
        SHOWGAS(s_base, 40(%esi))
        SHOW8(s_irq_type, 52(%esi))
        SHOW8(s_irq, 53(%esi))
        SHOW8(s_baud, 58(%esi))
        call newline
        ret

/* putgas: a Generic Address Structure at %eax as "SPACE WIDTH OFFSET
   ACCESS ADDRESS". */
putgas:
        pushl %esi
        pushl %edx
        pushl %eax
        movl %eax, %esi
        movzbl (%esi), %eax
        call puthex
        SHOW8(s_sp, 1(%esi))
        SHOW8(s_sp, 2(%esi))
        SHOW8(s_sp, 3(%esi))
        call space
        movl 4(%esi), %eax
        movl 8(%esi), %edx
        call puthex64
        popl %eax
        popl %edx
        popl %esi
        ret

/* dump_hex: %ecx bytes at %esi as "dsdt HEX" lines of HEX_PER_LINE bytes. */
dump_hex:
        pushal
        xorl %ebx, %ebx
1:      testl %ecx, %ecx
        jz 3f
        testl %ebx, %ebx
        jnz 2f
        PUTS32(s_dsdt_hex)
2:      movzbl (%esi), %eax
        call puthex2
        incl %esi
        decl %ecx
        incl %ebx
        cmpl $HEX_PER_LINE, %ebx
        jne 1b
        call newline
        xorl %ebx, %ebx
        jmp 1b
3:      testl %ebx, %ebx
        jz 4f
        call newline
4:      popal
        ret

/* puthex2: %al as two hex digits. */
puthex2:
        pushl %eax
        pushl %edx
        movzbl %al, %edx
        movl %edx, %eax
        shrl $4, %eax
        movb hexdigits(%eax), %al
        call putc
        andl $15, %edx
        movb hexdigits(%edx), %al
        call putc
        popl %edx
        popl %eax
        ret

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

/* parse_cpus: %esi = command line or 0; N of "cpus=N" in %eax, 0 when
   absent (no CPU check); exits with EXIT_BAD_CMDLINE on a malformed N. */
parse_cpus:
        xorl %eax, %eax
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
8:      PUTS32(s_badcmd)
        movl $EXIT_BAD_CMDLINE, %eax
        jmp exit

        .section .rodata
s_no_rsdp:      .asciz "acpi: no RSDP\n"
s_bad_rsdp_sum: .asciz "acpi: bad RSDP checksum at "
s_bad_rsdp_len: .asciz "acpi: bad RSDP length at "
s_bad_rsdp_xsum: .asciz "acpi: bad RSDP extended checksum at "
s_above_4g:     .asciz "acpi: table above 4 GiB named at "
s_no_xsdt:      .asciz "acpi: revision 2 RSDP without an XSDT at "
s_xsdt_differs: .asciz "acpi: XSDT and RSDT differ at "
s_null:         .asciz "acpi: null table pointer at "
s_bad_sig:      .asciz "acpi: wrong signature at "
s_bad_len:      .asciz "acpi: bad length at "
s_bad_sum:      .asciz "acpi: bad checksum at "
s_bad_madt:     .asciz "acpi: malformed MADT entry at "
s_facs_differs: .asciz "acpi: FIRMWARE_CTRL and X_FIRMWARE_CTRL differ in "
s_dsdt_differs: .asciz "acpi: DSDT and X_DSDT differ in "
s_facs_align:   .asciz "acpi: FACS not 64-byte aligned at "
s_fadt_count:   .asciz "acpi: expected exactly one FADT\n"
s_madt_count:   .asciz "acpi: expected exactly one MADT\n"
s_cpus_wrong:   .asciz "acpi: MADT lists "
s_expected:     .asciz " enabled cpus, expected "
s_badcmd:       .asciz "acpi: bad cpus= on the command line\n"
s_rsdp:         .asciz "acpi: rsdp "
s_rev:          .asciz " rev "
s_oem:          .asciz " oem "
s_rsdt:         .asciz " rsdt "
s_xsdt:         .asciz " xsdt "
s_same:         .asciz "acpi: xsdt lists the rsdt's tables\n"
s_table:        .asciz "table "
s_len:          .asciz " len "
s_sp:           .asciz " "
s_fadt_sci:     .asciz "fadt: sci "
s_smi_cmd:      .asciz " smi_cmd "
s_acpi_enable:  .asciz " enable "
s_acpi_disable: .asciz " disable "
s_fadt_pm1a_evt: .asciz "fadt: pm1a_evt "
s_pm1a_cnt:     .asciz " pm1a_cnt "
s_pm_tmr:       .asciz " pm_tmr "
s_gpe0:         .asciz " gpe0 "
s_fadt_lengths: .asciz "fadt: lengths "
s_fadt_flags:   .asciz "fadt: flags "
s_boot_arch:    .asciz " boot_arch "
s_century:      .asciz " century "
s_fadt_reset:   .asciz "fadt: reset "
s_value:        .asciz " value "
s_fadt_x_pm1a_evt: .asciz "fadt: x_pm1a_evt "
s_fadt_x_pm1a_cnt: .asciz "fadt: x_pm1a_cnt "
s_fadt_x_pm_tmr: .asciz "fadt: x_pm_tmr "
s_fadt_x_gpe0:  .asciz "fadt: x_gpe0 "
s_fadt_facs:    .asciz "fadt: facs "
s_x_facs:       .asciz " x_facs "
s_dsdt:         .asciz " dsdt "
s_x_dsdt:       .asciz " x_dsdt "
s_facs:         .asciz "facs "
s_version:      .asciz " version "
s_madt:         .asciz "madt: lapic_addr "
s_flags:        .asciz " flags "
s_entry:        .asciz "madt entry "
s_entry_len:    .asciz " len "
s_lapic:        .asciz "lapic "
s_ioapic:       .asciz "ioapic "
s_iso:          .asciz "iso "
s_nmi:          .asciz "lapic_nmi "
s_hpet:         .asciz "hpet: id "
s_base:         .asciz " base "
s_number:       .asciz " number "
s_min_tick:     .asciz " min_tick "
s_mcfg:         .asciz "mcfg: base "
s_segment:      .asciz " segment "
s_buses:        .asciz " buses "
s_spcr:         .asciz "spcr: interface "
s_irq_type:     .asciz " irq_type "
s_irq:          .asciz " irq "
s_baud:         .asciz " baud "
s_bad_port:     .asciz "acpi: PM port above 0xffff in the FADT at "
s_tmr_stuck:    .asciz "acpi: the PM timer the FADT names does not advance; FADT at "
s_pm1_en:       .asciz "acpi: PWRBTN_EN does not stick in the PM1_EN the FADT names; FADT at "
s_sci_en:       .asciz "acpi: ACPI_ENABLE/DISABLE through SMI_CMD do not switch SCI_EN in PM1a_CNT; FADT at "
s_pm_live:      .asciz "fadt: pm timer, pm1_en, smi_cmd and pm1a_cnt respond\n"
s_hpet_not_there: .asciz "acpi: no HPET with the table's block id at its base; table at "
s_hpet_live:    .asciz "hpet: capabilities match the block id\n"
s_ecam_high:    .asciz "acpi: ECAM above 4 GiB; slot "
s_ecam_differs: .asciz "acpi: ECAM and config mechanism #1 differ at slot "
s_pci:          .asciz "pci "
s_dsdt_hex:     .asciz "dsdt "
s_acpi:         .asciz "acpi: "
s_done:         .asciz " cpus, every checksum ok\n"

        .data
        .balign 4
want_cpus:      .long 0
rsdp_rev:       .long 0
rsdt:           .long 0
xsdt:           .long 0
nentries:       .long 0
seen_fadt:      .long 0
seen_madt:      .long 0
madt_cpus:      .long 0
facs:           .long 0
dsdt:           .long 0

        .bss
        .balign 4
entries:        .space 4 * MAX_ENTRIES

#include "lib32.S"
