//! Test guests for bhyve, assembled from `guests/*.S` with the system
//! `gcc`/GNU as/ld at build time (no binaries are committed).
//!
//! # Booting them
//! PVH guests are ELF64 images with a `XEN_ELFNOTE_PHYS32_ENTRY` note,
//! linked at 1 MiB, entered in 32-bit protected mode with `ebx` =
//! hvm_start_info. `bzimage_inspect` is a bzImage (setup header, boot
//! protocol 2.15, `XLF_KERNEL_64`, no real-mode setup code) entered at
//! load address + 0x200 in long mode with `rsi` = boot_params. Boot any of
//! them as a kernel: `bhyve -o boot.kernel=X [-o boot.initrd=F]
//! [-o boot.cmdline=S] …` or `bhyveload` + `bhyve`. Under QEMU:
//! `qemu-system-x86_64 -M microvm,rtc=off -enable-kvm -m 256 -nographic
//! -no-reboot -kernel X.elf [-initrd F] -append S -device
//! isa-debug-exit,iobase=0xf4,iosize=4 -serial stdio` (`-M pc` for the
//! reset guests, which need 0xcf9 and the i8042).
//!
//! All output goes to COM1 (0x3f8; LSR bit 5 polled before each byte),
//! one `\n`-terminated line per fact, numbers as `0x` + lowercase hex
//! without leading zeros. Guests end by writing a 32-bit value `v` to
//! pc-testdev's isa-debug-exit port 0xf4; bhyve (like QEMU) exits with
//! `(v << 1) | 1`:
//!
//! | v | status | meaning |
//! |---|---|---|
//! | 0x10 | 33 | pass |
//! | 0x11 | 35 | failure (bad hvm_start_info magic, reset or fault ignored) |
//! | 0x12 | 37 | `smp`: not all expected CPUs checked in (TSC-bounded wait, 2^34 ticks) |
//! | 0x13 | 39 | `smp`: malformed `cpus=` (not 1–255) |
//!
//! # The guests and their exact output
//! * `hello` → `Hello from a bhyve test guest`, status 33.
//! * `demo` → `bhyve demo guest: booted`, `bhyve demo guest: N MiB of RAM`
//!   (RAM entries of the memmap summed, rounded up to MiB, decimal; 256
//!   for `-m 256M`), `bhyve demo guest: powering off`, status 33.
//! * `reset_cf9` → `reset_cf9: resetting`, writes 0x06 to port 0xcf9:
//!   bhyve exits 0 (reboot). If it survives: `reset_cf9: still running`,
//!   status 35.
//! * `reset_kbd` → `reset_kbd: resetting`, writes 0xfe to port 0x64:
//!   exit 0; else `reset_kbd: still running`, status 35.
//! * `triple_fault` → `triple_fault: faulting`, loads an empty IDT and
//!   divides by zero: shutdown, bhyve exits 3; else `… still running`, 35.
//! * `halt` → `halt: halting`, then `cli; hlt`: bhyve exits 2.
//! * `smp` (command line `cpus=N`, default 1) → `smp: expecting 0xN
//!   cpus`, then after INIT/SIPI/SIPI (all-excluding-self, trampoline at
//!   0x10000) one `cpu 0xI apic 0xA` line per CPU sorted by APIC ID, then
//!   `smp: 0xN cpus online`, status 33. Timeout: `smp: timeout: 0xK of
//!   0xN cpus checked in`, status 37.
//! * `pvh_inspect` → `pvh_inspect: magic 0x336ec578 version 0x1`,
//!   `cmdline: <text>`, one `memmap ADDR SIZE TYPE` per memmap entry, one
//!   `module PADDR SIZE fnv1a HASH` per module (FNV-1a 32 over the module
//!   bytes, see [`fnv1a`]), `pvh_inspect: done`, status 33.
//! * `pio_loop` (cmdline `iterations=N`) → no output; N rounds of
//!   `out 0xe0, al` (pc-testdev's scratch port), status 33. The benchmark
//!   guest of `bhyve-bench pio`.
//! * `serial_echo` → waits for one byte `c` on COM1, then `echo: c`,
//!   status 33.
//! * `mptable` → scans 0xf0000–0xfffff in 16-byte steps for the MP
//!   floating pointer. None: `mptable: none`, status 33. Found: `mptable:
//!   at ADDR table ADDR`, `mptable: checksums ok` (floating pointer, base
//!   and extended table), then one line per entry in table order: `cpu ID
//!   flags F`, `bus ID NAME`, `ioapic ID ADDR`, `ioint TYPE FLAGS BUS IRQ
//!   APIC PIN`, `lint TYPE FLAGS BUS IRQ APIC PIN`; then `mptable: 0xN
//!   cpus`, status 33. A bad checksum or malformed table: one `mptable:
//!   bad …`/`malformed table` line, status 35.
//! * `pit_ioapic` → masks both 8259s, unmasks I/O APIC pins 0 and 2,
//!   runs the PIT at ~1 kHz and waits (a ~4 s local APIC timer bounds
//!   the wait) for 10 interrupts on pin 2, each EOIed through the local
//!   APIC: `pit_ioapic:
//!   0xa ticks on pin 2, pin 0 saw 0xN` (N = interrupts on pin 0, 0 on
//!   bhyve's wiring), status 33. Timeout: `pit_ioapic: timeout: ticks on
//!   pin 2: 0xK`, status 35; any other vector or exception: `pit_ioapic:
//!   unexpected interrupt or exception`, status 35.
//! * `hpet_pm` → starts the HPET, waits ~10 ms of PM timer and prints
//!   `hpet_pm: pm 0xP hpet 0xH` (both counters' deltas; H/P ≈
//!   16777216/3579545); then `hpet_pm: timer 0 edge interrupt on pin 20`
//!   (HPET timer 0, one-shot, edge, I/O APIC pin 20, ~1 ms), `hpet_pm:
//!   timer 1 0x3 level interrupts on pin 21` (timer 1, periodic ~1 ms,
//!   level, acknowledged through GEN_INT_STS), `hpet_pm: entering S5` and
//!   writes SLP_TYP 5 | SLP_EN to PM1a_CNT (0x404): bhyve exits 1. If it
//!   survives: `hpet_pm: still running after S5`, status 35; a ~4 s local
//!   APIC timer bounds the waits (`hpet_pm: timeout: 0xT0 0xT1`, 35).
//! * `acpi_button` → writes ACPI_ENABLE (0xa0) to SMI_CMD (0xb2), enables
//!   PWRBTN_EN, routes the SCI (I/O APIC pin 9, level, active low),
//!   prints `acpi_button: ready` and waits ~4 s for the SCI; its handler
//!   finds and clears PWRBTN_STS: `acpi_button: sci, pressed`. Then it
//!   polls PM1_STS (TSC-bounded, 2^34 ticks) for a second press:
//!   `acpi_button: pressed again`, and enters S5 (bhyve exits 1).
//!   Failures print one `acpi_button: …` line and exit with status 35.
//! * `rtc` → polls register A for an update edge (UIP set then clear,
//!   TSC-bounded): `rtc: update edge`; reads century, year, month, day,
//!   hour, minute, second as reset left them (BCD, 24-hour) and again in
//!   binary: `rtc: bcd C Y M D h m s`, `rtc: binary C Y M D h m s` (raw
//!   register values in hex, so BCD fields read as decimal); `rtc: cmos
//!   LOW HIGH CPUS` (0x35:0x34, 0x5d:0x5c:0x5b, 0x5f); then waits for
//!   five 1024 Hz periodic interrupts on I/O APIC pin 8, each with IRQF
//!   and PF in register C: `rtc: 0x5 periodic interrupts on pin 8`,
//!   status 33. Failures: `rtc: no update edge`, `rtc: register C V`,
//!   `rtc: timeout: 0xN` (~4 s local APIC timer), status 35.
//! * `acpi_tables` (command line `cpus=N` optional) → finds the RSDP
//!   as an OS does (first KiB of the EBDA named at 0x40e, then
//!   0xe0000–0xfffff in 16-byte steps), checks its checksum and extended
//!   checksum, the RSDT, the XSDT (same tables, same order), every listed
//!   table, the FACS and the DSDT (signature, length 36–64 KiB,
//!   checksum). Prints `acpi: rsdp ADDR rev R oem OEM rsdt A xsdt B`, one
//!   `table SIG ADDR len L rev R` per table, and the fields that place the
//!   platform: `fadt: …` (SCI, SMI_CMD, PM1a event/control, PM timer,
//!   GPE0, lengths, flags, reset register, the X_ blocks as `SPACE WIDTH
//!   OFFSET ACCESS ADDR`, FACS/DSDT pointers), `facs ADDR len L version
//!   V`, `madt: …` then one `lapic UID ID FLAGS` / `ioapic ID ADDR BASE`
//!   / `iso BUS IRQ GSI FLAGS` / `lapic_nmi UID FLAGS LINT` per entry,
//!   `hpet: …`, `mcfg: base B segment S buses FIRST LAST` with `pci SLOT
//!   ID` for each slot of bus 0 answering, `spcr: …`, and the DSDT as
//!   `dsdt HEX` lines (32 bytes each). It also checks that the ports and
//!   addresses answer as those devices (`fadt: pm timer, pm1_en, smi_cmd
//!   and pm1a_cnt respond`, `hpet: capabilities match the block id`, ECAM
//!   reads equal to config mechanism #1). Ends `acpi: 0xN cpus, every
//!   checksum ok`, status 33. Any failure (no RSDP, bad checksum, length
//!   or signature, XSDT ≠ RSDT, a dead register, MADT listing other than
//!   `cpus=N` enabled CPUs): one `acpi: …` line, status 35.
//! * `virtio_rnd` (command line `transport=legacy|modern
//!   irq=msix|msi|intx|msix-pending|msix-masked`, both required, else
//!   status 39) → drives every virtio-rnd function (1af4:1005) of bus 0
//!   without firmware help: `virtio_rnd: transport T irq I`, one
//!   `virtio_rnd: function SLOT FUNC` per function found through
//!   mechanism #1, `virtio_rnd: ecam agrees with conf1` (the first one's
//!   ID and class through ECAM). Then per function: `virtio_rnd: driving
//!   SLOT FUNC`, `virtio_rnd: bars B0 … B5` (raw registers), one
//!   `virtio_rnd: cap ID` per capability (vendor ones `… type T bar B off
//!   O len L`), `virtio_rnd: legacy features F` (BAR 0 I/O: reset,
//!   ACK|DRIVER, QUEUE_SEL/NUM/PFN, QUEUE_VECTOR with MSI-X) or
//!   `virtio_rnd: modern features HI LO` (common configuration, VERSION_1
//!   and FEATURES_OK read back, notify at off + queue_notify_off *
//!   multiplier), `virtio_rnd: queue size N` (modern: `… N set 0x10`);
//!   four 64-byte device-writable buffers are posted and notified:
//!   `virtio_rnd: 0x4 buffers of 0x40 random bytes` (ids, lengths, every
//!   buffer changed and differs from the others), then the interrupt its
//!   IDT handler took: `virtio_rnd: msix interrupt on vector 0x30` (table
//!   entry 0 to this CPU), `virtio_rnd: msi interrupt on vector 0x34`
//!   (bhyve's `-W`), or `virtio_rnd: intx on pin P isr 0x1 then 0x0` (I/O
//!   APIC pins 16–23 level/active-low, ISR read in the handler, EOI),
//!   followed by `virtio_rnd: intx handler found isr 0: 0xN times, last on
//!   pin P` when, in the ~0.3 s it then keeps interrupts open, the handler
//!   ran again and found ISR 0 (more than 8: failure, the level stayed
//!   up).
//!   `msix-pending` masks the entry first: `virtio_rnd: masked: buffers
//!   used, no interrupt, pending bit set`, then unmasks and the interrupt
//!   must arrive; `msix-masked` never unmasks and times out (~4 s local
//!   APIC timer): `virtio_rnd: timeout: interrupts 0x0 used 0x4`, status
//!   35. Ends `virtio_rnd: 0xN functions passed`, status 33. Any failure
//!   (no function or capability, a refused setting, a bad used entry,
//!   unchanged or equal buffers, an INTx level that stayed up):
//!   one `virtio_rnd: …` line, status 35.
//! * `virtio_blk_bench` (command line `reqs=N seqreqs=M`, defaults 2000
//!   and 64) and `virtio_net_bench` (`frames=N`, default 100000,
//!   `rxframes=M`, default 0): the
//!   benchmark guests of `bhyve-bench blk`/`net` (`guests/bench64.S`:
//!   long mode, then everything at CPL3 with IOPL 3 and an all-ports I/O
//!   bitmap; the first 1af4:1001 / 1af4:1000 function through the legacy
//!   transport, used ring polled, no interrupts). `virtio_blk_bench`
//!   prints `virtio_blk_bench: running`, one `BENCH NAME COUNT req BYTES
//!   bytes CYCLES tsc KICKS kicks` line (decimal; CYCLES are TSC ticks,
//!   KICKS the doorbells rung) for each of
//!   `randread-4k-qd1`, `randread-4k-qd32`, `randwrite-4k-qd1`,
//!   `randwrite-4k-qd32` (N requests of 4 KiB at random aligned offsets)
//!   and `seqread-1m-qd4`, `seqwrite-1m-qd4` (M requests of 1 MiB; every write's first 8 bytes
//!   are its sector number, little endian), then
//!   `virtio_blk_bench: done`, status 33. `virtio_net_bench` sends N
//!   60-byte frames (to 02:00:00:00:00:02, EtherType 0x88b5) and prints
//!   `BENCH tx-60b N frames BYTES bytes CYCLES tsc KICKS kicks` after
//!   `…: running`; with `rxframes=M` it then posts receive buffers,
//!   prints `virtio_net_bench: receiving` and `BENCH rx-60b K frames …`
//!   (K = M, or fewer when ~3 s of TSC pass without a frame; timed from
//!   the first frame to the last); then `…: done`, status 33. No function, a failed request (status
//!   byte not 0) or an unusable queue: one `…_bench: …` line, status 35;
//!   a fault at CPL3 triple-faults (bhyve exits 3).
//! * `bzimage_inspect` → `bzimage_inspect: type_of_loader 0xff version
//!   0x20f`, `cmdline: <text>`, `ramdisk ADDR SIZE fnv1a HASH` (only with
//!   an initrd), one `e820 ADDR SIZE TYPE` per boot_params e820 entry,
//!   `bzimage_inspect: done`, status 33.
//!
//! # C guests
//! `guests/c/NAME.c` linked with the C runtime (`guests/c/`: `crt64.S`
//! PVH entry → long mode → `main` at CPL3 with IOPL 3, low 4 GiB
//! identity-mapped with user pages, no IDT, so a fault triple-faults;
//! `tg.h` printf/exit/command line/heap from 16 MiB; `pci.h` bus 0
//! through mechanism #1; `virtio.h` a polled split-ring driver over the
//! legacy or modern virtio-pci transport). `main`'s return value goes to
//! isa-debug-exit; `tg_fail` prints `NAME: message` and exits 0x11. They
//! need at least 64 MiB of RAM. Under QEMU: `qemu-system-x86_64 -M q35
//! -enable-kvm -m 256 -nographic -no-reboot -kernel X.elf -append S
//! -device isa-debug-exit,iobase=0xf4,iosize=4 -serial stdio` (SeaBIOS
//! assigns the BARs; `-M microvm` for guests without PCI).
//! * `c_runtime` (command line `echo=WORD num=N`, both optional) → checks
//!   the runtime: `c_runtime: hello from C at CPL3`, `c_runtime: format
//!   beef 123456789abc -42 -5000000000 4000000000 18000000000000000000 z
//!   str 0x1000 -0012| ab|`, `c_runtime: echo WORD` (or `c_runtime: no
//!   echo`), `c_runtime: num N` (decimal; default 7), `c_runtime: fnv1a
//!   811c9dc5 e40c292c`, one `c_runtime: pci SLOT VENDOR:DEVICE` per slot
//!   of bus 0 (decimal slot, hex IDs), `c_runtime: done`, status 33. A
//!   misplaced or unzeroed allocation: `c_runtime: …`, status 35.
//! * `virtio_blk_io` (command line `transport=legacy|modern`, required,
//!   else status 39) → drives the first virtio-blk function (1af4:1001)
//!   through that transport, one queue polled: `virtio_blk_io: transport
//!   T`, `…: function SLOT FUNC`, `…: offered F NAMES…` and `…: taken F
//!   NAMES…` (feature bits in hex, then the names of the known ones; it
//!   takes seg_max, ro, blk_size, flush, topology, discard,
//!   write_zeroes and indirect_desc when offered, plus version_1 in
//!   modern), `…: capacity N sectors`, then for each taken feature its
//!   configuration: `…: seg_max N`, `…: blk_size N`, `…: topology exp E
//!   align A min_io M opt_io O`, `…: discard max M seg S align A`, `…:
//!   write_zeroes max M seg S may_unmap U`; `…: serial TEXT` (GET_ID).
//!   The capacity must be 0x4000–0x10000 sectors (8–32 MiB) and flush,
//!   discard and write_zeroes offered. It reads the whole disk (64 KiB
//!   requests, 16 in flight): `…: read N sectors fnv1a H` (FNV-1a of
//!   the disk); writes [`virtio_blk_io_pattern`] in four requests made
//!   available together, each reported as `…: write NAME sector S N
//!   sectors D descriptors ok`: `single` (sector 0x8, 0x8 sectors, one
//!   data descriptor), `multi` (0x3e8, 0x80 sectors, 0x10 descriptors
//!   in scattered buffers), `indirect` (0xbb9, 0x40 sectors, 0x8
//!   descriptors in an indirect table; without indirect_desc: `…: write
//!   indirect skipped, indirect_desc not offered`), `last` (the last
//!   sector, 2 descriptors of 256 bytes); `…: flush ok`; `…: discard
//!   sector 0x1000 0x800 sectors ok`, `…: write_zeroes sector 0x2000
//!   0x800 sectors ok`, `…: write_zeroes unmap sector 0x2800 0x800
//!   sectors ok` (flag UNMAP), `…: flush ok`. Reads the disk back:
//!   `…: discarded range reads zero` (or `… keeps its data`), and checks
//!   every byte against what it wrote, zeroed and read before: `…: read
//!   back N sectors fnv1a H as expected`. Then what the device must
//!   refuse, with the status it gave (`ok`, `ioerr`, `unsupp`): `…: read
//!   past the end: S` (sector = capacity), `…: read across the end: S`
//!   (2 sectors from the last), `…: unknown type: S` (type 0x77). A
//!   second virtio-blk function, if any, must be read-only: `…: ro disk
//!   ro offered` (or `ro not offered`), `…: ro disk write: S`, `…: ro
//!   disk sector 0 fnv1a H`; without one: `…: no second disk`. Ends `…:
//!   done`, status 33. A failed request, a bad used length or a
//!   read-back mismatch: one `virtio_blk_io: …` line, status 35.
//! * `virtio_console_io` (command line `transport=legacy|modern`,
//!   required, else status 39; `port=NAME`, default `port1`; `txlen=N`,
//!   1–16 MiB, default 3000; `rxlen=N`, default 4096) → drives the first
//!   virtio-console function (1af4:1003) as Linux's driver does:
//!   `virtio_console_io: transport T`, `…: function SLOT FUNC`, `…:
//!   offered F NAMES…`, `…: taken F NAMES…` (MULTIPORT only, plus
//!   version_1 in modern), `…: max_nr_ports N`; sets up every queue,
//!   posts control buffers, DRIVER_OK, sends DEVICE_READY: `…:
//!   device_ready sent`. Then one line per control message in arrival
//!   order: `…: device_add ID` (answered with PORT_READY), `…: port_name
//!   ID NAME`, `…: port_open ID V`, `…: event E port ID value V` (others),
//!   until the port named NAME is announced and opened by the host (a
//!   client connected). `…: port ID queues RX TX`; it sends PORT_OPEN 1,
//!   transmits `txlen` bytes of `virtio_console_io: bytes from the
//!   guest\n` repeated (chains of two descriptors, 1000 bytes each):
//!   `…: sent N bytes fnv1a H`; receives into 16 buffers of 128 bytes
//!   until `rxlen` bytes arrived: `…: received N bytes fnv1a H`; sends
//!   PORT_OPEN 0 and ends `…: done`, status 33. The host waits (open,
//!   buffers used, bytes) are bounded by 2^35 TSC ticks: `…: timeout: …`,
//!   status 35.
//! * `virtio_net_io` (command line `transport=legacy|modern`, required,
//!   else status 39; `mrg=0|1` negotiate MRG_RXBUF, default 0;
//!   `frames=K`, default 8; `rxframes=M`, default 4; both ≤ 10000) →
//!   drives the first 1af4:1000 function through that transport, both
//!   queues polled: `virtio_net_io: transport T mrg B`, `…: function SLOT
//!   FUNC`, `…: header N bytes` (12 with VERSION_1 or MRG_RXBUF, else
//!   10), `…: mac xx:xx:xx:xx:xx:xx` (config), `…: link up` (STATUS),
//!   `…: mtu N` when MTU is offered (else `…: no mtu offered`). Frame
//!   rule (shared with the host test): dst, src, EtherType 0x88b5, the
//!   sequence number as 4 bytes little endian, then byte i (from 18) =
//!   `seq * 7 + i * 13 + (i >> 8)` (mod 256); length `60 + seq * 331 %
//!   (maxlen - 59)`. It sends K broadcast frames from its MAC (maxlen =
//!   min(mtu, 1500) + 14; header and frame as two descriptors, as one,
//!   and through an indirect table when offered, in turn; batches of 8),
//!   one `…: tx SEQ len L fnv1a H` each (decimal SEQ and L, H the frame's
//!   FNV-1a), then `…: sent K frames` and `…: receiving M frames`, and
//!   waits (~10 s of TSC each) for M frames to its MAC from
//!   02:00:00:00:00:01 with sequence 0x1000 + i and maxlen 1514, each
//!   checked byte for byte (and gso_type 0, num_buffers 1 with the
//!   12-byte header): `…: rx SEQ len L fnv1a H` (SEQ in hex); other frames
//!   are counted: `…: ignored N foreign frames`. Resets the device, `…:
//!   done`, status 33. Any mismatch, timeout or refused setting: one
//!   `virtio_net_io: …` line, status 35.
//! * `virtio_p9_io` (command line `transport=legacy|modern`, required,
//!   else status 39; `ro=1` when the share is read-only) → the first
//!   1af4:1009 function, MOUNT_TAG negotiated, one queue polled, msize
//!   8192. The share must hold `hello.txt`, a directory `sub` and the
//!   symlinks `up -> ..` and `etc -> /etc`. Lines: `virtio_p9_io:
//!   transport T ro B`, `…: function SLOT FUNC`, `…: tag TAG`, `…:
//!   version 9P2000.L msize 8192`, `…: attach qid type 80 path P` (P the
//!   root's qid path, the share's inode, hex), `…: read hello.txt N bytes
//!   fnv1a H` (Tlopen + Treads), `…: getattr hello.txt mode M size N`
//!   (hex mode), `…: refused walk to a missing file: errno 2`; then
//!   Tlcreate `new.txt` + two Twrites of 3000 bytes (byte i = `i * 31 +
//!   (i >> 7) + 5` mod 256): `…: wrote new.txt 3000 bytes fnv1a H`, Tmkdir
//!   `newdir`: `…: mkdir newdir`, Trenameat to `renamed.txt`: `…: renamed
//!   new.txt to renamed.txt` (with `ro=1` instead: `…: refused lcreate on
//!   a read-only share: errno 30`, `…: refused lopen for writing on a
//!   read-only share: errno 30`, `…: refused mkdir on a read-only share:
//!   errno 30`); one `…: readdir NAME` per entry of the root (`.` and `..`
//!   included, host order). Escapes: `…: walk .. stays at the root`, `…:
//!   walk sub .. .. stays at the root` (qids equal to the root's), `…:
//!   walk up/secret stops at the symlink`, `…: walk etc/passwd stops at
//!   the symlink` (short walk ending at a QTSYMLINK qid, or an error),
//!   `…: readlink up ..`, then one `…: refused WHAT: errno E` for each of
//!   `lopen of the symlink up`, `mkdir in the symlink up`, `renameat
//!   hello.txt into the symlink up`, `unlinkat secret in the symlink up`,
//!   `lcreate in the symlink up`, `lcreate ../escaped`, `lcreate
//!   sub/../../escaped`, `lcreate ..`, `mkdir ../escaped`, `renameat
//!   hello.txt to ../escaped`, `renameat ../secret into the share`,
//!   `renameat .. to inside`, `unlinkat ../secret`, `unlinkat ..` and
//!   (not `ro`) `renameat to ..` (into the fid walked to `..`). Clunks
//!   every fid (a second clunk must fail): `…: clunked`, `…: done`, status
//!   33. Any escape that succeeds, a malformed reply or a failed
//!   operation: one `virtio_p9_io: …` line, status 35.
//! * `ahci_io` (command line `badprdt=0` skips the bad-PRDT cases;
//!   `bench=1 reqs=N` runs the benchmark instead) → the first AHCI
//!   function (class 01/06/01), ABAR in BAR 5, polled, no interrupts:
//!   `ahci_io: function SLOT FUNC id VVVV:DDDD`, GHC.HR reset, GHC.AE,
//!   `…: version VS ports N slots S ncq B pi PI` (CAP and PI). Every
//!   implemented port whose link comes up (PxSSTS.DET 3) gets a command
//!   list, FIS area, FRE, spin-up, then by PxSIG: `…: port P disk sig
//!   0x101` or `…: port P atapi sig 0xeb140101`, and `…: port P model
//!   M`, `serial S`, `firmware F` (IDENTIFY / IDENTIFY PACKET DEVICE).
//!   Disks (8–64 MiB, LBA48 and NCQ required): `…: port P sectors N
//!   lba48 1 ncq 1 depth D trim T`; the whole disk by READ DMA EXT of
//!   64 KiB: `…: read N sectors fnv1a H`; D (≤ 32, ≤ slots) WRITE FPDMA
//!   QUEUED issued at once (PxSACT then PxCI with every tag; completion
//!   when both clear, an SDB FIS seen), tag t < D-1 at sector `0x800 +
//!   0x40 t`, `1 + 5t mod 40` sectors, the last tag the disk's last 8
//!   sectors, [`ahci_io_pattern`] data in 1–4 PRDs at unaligned (even)
//!   addresses: `…: ncq write 0xD commands outstanding ok`, `…: flush ok`
//!   (FLUSH CACHE EXT), the same D regions read back with READ FPDMA
//!   QUEUED in other PRD splits: `…: ncq read 0xD commands outstanding,
//!   data as written`; with TRIM: DATA SET MANAGEMENT of sectors 0x2000
//!   and 0x3000, 0x800 each: `…: trim sectors 0x2000 0x3000 of 0x800
//!   ok`, `…: flush ok` (else `…: trim not supported`); the whole disk by
//!   NCQ (D × 64 KiB at a time): `…: trimmed ranges read zero` (or `keep
//!   their data`), `…: ncq read back N sectors fnv1a H as expected` (every
//!   byte checked in the guest). Bad PRDTs, each a READ DMA EXT of 8
//!   sectors: `…: bad prdt empty|short|outside ram: error tfd T` or `ok
//!   prdbc B` (no PRD, one 512-byte PRD, a buffer at 2^44; a timeout
//!   fails), the port recovered (ST cleared and set) and read again:
//!   `…: reads after bad prdts`. ATAPI (2048-byte blocks, at least 33):
//!   TEST UNIT READY (UNIT ATTENTION retried), `…: port P inquiry type T
//!   removable R vendor V product P`, `…: port P capacity N blocks of
//!   0x800 bytes` (READ CAPACITY), three READ(10)s by DMA: `…: port P
//!   read lba L N blocks fnv1a H` for (0, 8), (16, 1), (last-3, 4); a
//!   READ(10) past the end must fail: `…: port P read past the end: sense
//!   key K asc A` (REQUEST SENSE). Ends `…: 0xN ports passed`, `…: done`,
//!   status 33. `bench=1`: the first disk, `…: bench port P`, then `BENCH
//!   randread-4k-qd1` and `BENCH randread-4k-qd32` lines (the
//!   `virtio_blk_bench` format; N reads of 4 KiB at random aligned
//!   offsets with READ FPDMA QUEUED, 1 or 32 in flight, freed tags
//!   refilled together; kicks = PxSACT and PxCI writes), `…: done`. Any
//!   failure: one `ahci_io: …` line, status 35.
//! * `nvme_io` (command line `queues=N`, 1–16, default 4; `qsz=N`,
//!   8–4096, default 64, cut to CAP.MQES + 1; `bench=1 reqs=N` runs the
//!   benchmark) → the first NVMe function (class 01/08/02), BAR 0,
//!   polled (INTMS all set, CQs without interrupts): `nvme_io: function
//!   SLOT FUNC id VVVV:DDDD`, `…: version VS mqes M dstrd D css C mpsmin
//!   0x0`; CC.EN 0 → CSTS.RDY 0, admin queues of 16, CC.EN 1: `…:
//!   enabled`; Identify controller: `…: model M`, `…: serial S`, `…:
//!   firmware F`, `…: vid V nn N oncs O vwc W mdts M sqes S cqes C`;
//!   Identify namespace 1: `…: namespace 1 size N lba format F of K data
//!   B meta M` (512- or 4096-byte LBAs, 8–64 MiB, DSM required); Set
//!   Features Number of Queues: `…: queues requested N granted sq A cq
//!   B`; min(N, A, B) CQ/SQ pairs: `…: 0xN queue pairs of 0xQ entries`.
//!   The whole namespace in 64 KiB reads spread over every queue: `…:
//!   read N blocks fnv1a H`; [`nvme_io_pattern`] writes, write k on
//!   queue k mod N, all queues rung together: `prp1` (byte 0x100000,
//!   0x800 bytes at offset 0x600 of a page), `prp1+prp2` (0x140000,
//!   0x1000 at 0x600; 0x2000 at 0 with 4 KiB LBAs), `prp list chained`
//!   (0x180000, 64 KiB at 0x200, the list starting 0x20 bytes before
//!   its page's end, so its last slot chains), `prp list` (0x1c0000, 128
//!   KiB), `last` (the last LBA), data pages scattered: `…: write NAME
//!   lba L N blocks P pages queue Q ok`; Flush on every queue: `…: flush
//!   ok on every queue`; each read back in the next shape: `…: read back
//!   every shape as written`; the first queue filled (Q - 1 reads with
//!   one doorbell) three times: `…: full queue 0x1: 0xQ-1 commands
//!   outstanding 0x3 times, cq phase wrapped W times`; Dataset Management
//!   deallocate of bytes 8–9 MiB + Flush: `…: deallocate lba L N blocks
//!   ok`; the namespace again over every queue: `…: deallocated range
//!   reads zero` (or `keeps its data`), `…: read back N blocks fnv1a H as
//!   expected` (every byte checked); reads with PRP1, a PRP list entry
//!   or the PRP list pointer at 2^44: `…: prp1 outside ram: status S`,
//!   `…: prp list entry outside ram: status S`, `…: prp list outside
//!   ram: status S` (SCT << 8 | SC; QEMU answers 0 for the first two),
//!   `…: reads after bad prps`; Delete SQ/CQ: `…: deleted 0xN queue
//!   pairs`, CC.SHN normal: `…: shutdown complete`, `…: done`, status 33.
//!   `bench=1`: one pair of ≤ 64 entries, `BENCH randread-4k-qd1` and
//!   `BENCH randread-4k-qd32` (4 KiB reads at random aligned offsets,
//!   PRP1 only, completions reaped in batches and refilled with one SQ
//!   doorbell; kicks = SQ and CQ doorbell writes), `…: done`. Any
//!   failure (timeout, an error status, a stray completion, a mismatch):
//!   one `nvme_io: …` line, status 35.
//! * `e1000_io` (command line `frames=K`, default 8, `rxframes=M`,
//!   default 4, both ≤ 10000; `offload=0|1`, default 1; `rxbuf=2048|1024|
//!   512|256`, default 2048; `iowindow=1` to check the I/O window;
//!   `poptsfirst=1` to set the offloaded packets' POPTS in their first
//!   data descriptor only, else in every one; else status 39) → the first 8086:100f (82545EM) or 8086:100e (82540EM)
//!   function, registers in memory BAR 0, polled with IMS 0: `e1000_io:
//!   offload O rxbuf B`, `…: function SLOT FUNC id 8086:DDDD`; CTRL.RST,
//!   the 64 EEPROM words through EERD: `…: eeprom mac xx:…`, `…: eeprom
//!   checksum ok` (sum 0xbaba), `…: ral mac xx:… valid V` (RAL0/RAH0 as
//!   the reset left them, V the AV bit); with `iowindow=1` IOADDR/IODATA
//!   of the first I/O BAR must read RAL0 and STATUS as BAR 0 does: `…: io
//!   window agrees` (QEMU's window reads 0); CTRL.SLU, STATUS.LU awaited:
//!   `…: link up S Mb/s full|half duplex`. Rings of 64 descriptors; RA 0
//!   = the EEPROM MAC, MTA clear, RCTL EN|BAM|SECRC and the buffer size.
//!   It sends K frames of `virtio_net_io`'s rule (broadcast, from its MAC,
//!   maxlen 1514) through legacy descriptors (whole, header + rest, three
//!   pieces in turn; RS on each, DD and TDH awaited): `…: tx SEQ len L
//!   fnv1a H`; then ICR must hold TXDW and a second read not: `…: icr txdw
//!   set, then clear`. With offload: a context descriptor (IPCSS 14 IPCSO
//!   24 IPCSE 33 TUCSS 34, UDP) and two data descriptors (IXSM|TXSM) send
//!   an IPv4/UDP datagram 10.0.2.15:5555 → 10.0.2.2:4444 to
//!   02:00:00:00:00:01, IP ID 0x1234, DF, TTL 64, both checksums left to
//!   the device, payload 999 bytes (byte i = `0x2000 * 7 + i * 13 + (i >>
//!   8)` mod 256): `…: udp checksum offload len 1041 payload fnv1a H`;
//!   then a TSO context (TCP, MSS 1448, header 54) and three data
//!   descriptors (header, 2000, 3000 bytes) carry one TCP segment (same
//!   addresses and ports, IP ID 0x4321, seq 0x01020304, ack 0x0a0b0c0d,
//!   ACK|PSH|FIN, window 0xffff) of 5000 payload bytes (seq 0x3000 in the
//!   rule): `…: tso paylen 5000 mss 1448 payload fnv1a H`, which the
//!   device must cut into 4 segments (IP length and ID + k, sequence +
//!   k * 1448, PSH and FIN only on the last, both checksums). `…: sent K
//!   frames`, `…: receiving M frames`; it waits (~10 s of TSC each) for M
//!   frames to its MAC from 02:00:00:00:00:01 with sequence 0x1000 + i,
//!   maxlen 1514, gathered from descriptors up to EOP and compared byte
//!   for byte: `…: rx SEQ len L fnv1a H` (SEQ hex); other EtherTypes are
//!   counted (`…: ignored N foreign frames`), a frame to another address
//!   fails the guest. Then `…: icr rxt0 set, then clear`, RCTL/TCTL off,
//!   CTRL.RST, `…: done`, status 33. Any mismatch or timeout: one
//!   `e1000_io: …` line, status 35.
//! * `uart_pci_io` (command line `rxlen=N`, `txlen=M`, defaults 4096,
//!   both ≤ 1 MiB, else status 39) → the first 131f:2000 (bhyve) or
//!   1b36:0002 (QEMU pci-serial) function, registers in I/O BAR 0, polled:
//!   `uart_pci_io: function SLOT FUNC id VVVV:DDDD`; divisor 1 read back
//!   under DLAB, LCR 8N1, FIFOs on (IIR bits 7:6), the scratch register:
//!   `…: 115200 8n1, fifo enabled, scratch ok`; loopback (MCR bit 4: MSR
//!   shows CTS, DSR and DCD; `loop` written comes back and never reaches
//!   the line): `…: loopback ok`; `…: receiving N bytes`, then N bytes from
//!   the backend (byte i = `i * 7 + (i >> 8) + 3` mod 256, LSR.DR polled,
//!   an overrun fails): `…: received N bytes fnv1a H`; sends M bytes
//!   (byte i = `i * 11 + (i >> 8) + 5` mod 256, LSR.THRE polled): `…: sent
//!   M bytes fnv1a H`; waits for the host's `!`: `…: host acknowledged`,
//!   TEMT, `…: done`, status 33. Waits are bounded by 2^35 TSC ticks; any
//!   failure: one `uart_pci_io: …` line, status 35.

use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Names of all guests.
pub const GUESTS: &[&str] = &[
    "hello",
    "demo",
    "reset_cf9",
    "reset_kbd",
    "triple_fault",
    "halt",
    "smp",
    "pvh_inspect",
    "pio_loop",
    "serial_echo",
    "mptable",
    "pit_ioapic",
    "hpet_pm",
    "acpi_button",
    "rtc",
    "acpi_tables",
    "virtio_rnd",
    "virtio_blk_bench",
    "virtio_net_bench",
    "bzimage_inspect",
    "c_runtime",
    "virtio_blk_io",
    "virtio_console_io",
    "virtio_net_io",
    "virtio_p9_io",
    "ahci_io",
    "nvme_io",
    "e1000_io",
    "uart_pci_io",
];

/// isa-debug-exit values and the exit statuses they produce.
pub const EXIT_PASS: u32 = 0x10;
pub const EXIT_FAIL: u32 = 0x11;
pub const EXIT_SMP_TIMEOUT: u32 = 0x12;
pub const EXIT_BAD_CMDLINE: u32 = 0x13;

/// The exit status bhyve (and QEMU) report for a debug-exit value.
pub const fn exit_status(v: u32) -> i32 {
    ((v << 1) | 1) as i32
}

/// The exit status of a guest that passed: `exit_status(EXIT_PASS)`.
pub const PASS_STATUS: i32 = exit_status(EXIT_PASS);

/// Whether QEMU with KVM is here to run the guests as the yardstick
/// (tests skip their QEMU cross-checks otherwise, saying so on stderr).
pub fn qemu_available() -> bool {
    let ok = Path::new("/dev/kvm").exists()
        && std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: qemu-system-x86_64 or /dev/kvm not available");
    }
    ok
}

/// The image of guest `name`.
pub fn guest_bytes(name: &str) -> Option<&'static [u8]> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// File name for guest `name`: `NAME.elf` for PVH guests, `NAME.bzImage`
/// for bzImage guests.
pub fn file_name(name: &str) -> String {
    if name.starts_with("bzimage") {
        format!("{name}.bzImage")
    } else {
        format!("{name}.elf")
    }
}

/// Writes guest `name` into `dir` (as [`file_name`]) and returns its path.
pub fn write_guest(name: &str, dir: &Path) -> io::Result<PathBuf> {
    let bytes = guest_bytes(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown test guest '{name}'"),
        )
    })?;
    let path = dir.join(file_name(name));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// The checksum `pvh_inspect` and `bzimage_inspect` print for modules.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The byte `virtio_blk_io` writes at disk byte offset `offset`.
pub fn virtio_blk_io_pattern(offset: u64) -> u8 {
    let sector = (offset >> 9) as u32;
    let byte = (offset & 511) as u32;
    (sector
        .wrapping_mul(2_654_435_761)
        .wrapping_add(byte.wrapping_mul(0x0100_0193))
        >> 24) as u8
}

/// The byte `ahci_io` writes at disk byte offset `offset`.
pub fn ahci_io_pattern(offset: u64) -> u8 {
    virtio_blk_io_pattern(offset) ^ 0x5a
}

/// The byte `nvme_io` writes at namespace byte offset `offset`.
pub fn nvme_io_pattern(offset: u64) -> u8 {
    virtio_blk_io_pattern(offset) ^ 0xa5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_is_built() {
        assert_eq!(GUESTS.len(), TABLE.len());
        for name in GUESTS {
            let b = guest_bytes(name).unwrap_or_else(|| panic!("{name} missing"));
            if name.starts_with("bzimage") {
                assert_eq!(&b[0x202..0x206], b"HdrS", "{name}");
                assert_eq!(b.len() % 512, 0);
            } else {
                assert_eq!(&b[..4], b"\x7fELF", "{name}");
            }
        }
        assert!(guest_bytes("nope").is_none());
    }

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0x811c9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c292c);
    }

    #[test]
    fn write_guest_writes_files() {
        let dir = std::env::temp_dir().join(format!("bhyve-tg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write_guest("hello", &dir).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), guest_bytes("hello").unwrap());
        assert!(write_guest("nope", &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
