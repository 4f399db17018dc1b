#!/bin/sh
# The lab's L1 init (see crates/lab/src/l1.rs).
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 3<>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo
fail() { echo "LAB-L1-FAIL $*" >&3; echo "LAB-L1-FAIL $*"; poweroff -f; }
work=
for w in $(cat /proc/cmdline); do
    case "$w" in lab.work=*) work="${w#lab.work=}" ;; esac
done
[ -n "$work" ] || fail "no lab.work= on the kernel command line"
for m in $(cat /modules.order); do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm_amd (does the CPU model offer svm?)"
opts=trans=virtio,version=9p2000.L,msize=512000,cache=none
mkdir -p /host
mount -t 9p -o ro,$opts hostroot /host || fail "mounting the host root"
mount --bind /proc /host/proc
mount --bind /sys /host/sys
mount --bind /dev /host/dev
mkdir -p /host/dev/shm
mount -t tmpfs tmpfs /host/dev/shm
# Scratch space on /run (each job gets its own directory there, see
# below). The host's /tmp stays visible, read-only: the workspace may
# live there.
mount -t tmpfs tmpfs /host/run
mkdir -p /host/run/tmp
chmod 1777 /host/run/tmp
# Last, so no scratch mount can hide it.
mount -t 9p -o $opts work "/host$work" || fail "mounting the work folder at $work"
echo "LAB-L1-READY" >&3
jobs="/host$work/jobs"
# The heartbeat: a count the host watches change. If it stops, L1 (its
# kernel, or QEMU's CPU under it) hangs, and the host boots a new L1.
beat=0
while :; do
    beat=$((beat + 1))
    [ $((beat % 5)) = 1 ] && echo $beat >"/host$work/alive"
    for go in "$jobs"/*/go; do
        [ -f "$go" ] || continue
        d="${go%/go}"
        j="${d#/host}"
        secs=$(cat "$go")
        rm -f "$go"
        echo "lab-l1: job ${d##*/} (${secs} s)" >/dev/console
        (
            exec 3>&-
            # Each job's scratch (TMPDIR, bhyve's run dir with the guests'
            # memory files) goes with it: a guest killed with SIGKILL
            # leaves its memory file, and /run is a tmpfs shared by every
            # job of this L1.
            scratch=/run/job-${d##*/}
            mkdir -p "/host$scratch/tmp"
            chmod 1777 "/host$scratch/tmp"
            chroot /host /usr/bin/env -i \
                PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root TERM=dumb TMPDIR="$scratch/tmp" \
                BHYVE_RUNDIR="$scratch/bhyve" LAB_JOB="$j" LAB_WORK="$work" \
                /usr/bin/timeout -s KILL "$secs" /bin/bash "$j/script" \
                >"$d/out" 2>&1 </dev/null
            echo $? >"$d/status.tmp"
            rm -rf "/host$scratch"
            mv "$d/status.tmp" "$d/status"
        ) &
    done
    [ -f "/host$work/exit" ] && poweroff -f
    usleep 200000
done
