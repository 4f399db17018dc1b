# Shell helpers every lab job script starts with (crates/lab/src/prelude.sh).
# The job runs in L1, as root, in the host's root file system (read-only,
# scratch space in $TMPDIR and /run), with its working directory $LAB_JOB
# on the shared work folder (readable from the host afterwards).
set -u
# Named VMs and guest memory on L1's tmpfs (memory files are mmap'ed; the
# 9p work share is for results).
# L1's job runner gives each job its own, removed when the job ends.
export BHYVE_RUNDIR=${BHYVE_RUNDIR:-/run/bhyve-lab-$$}
mkdir -p "$BHYVE_RUNDIR"
# bhyve's diagnostics (a triple fault's registers, …) in its stderr.
export BHYVE_LOG=info

# result KEY VALUE: a line the test reads back.
result() { echo "RESULT $1=$2"; }

# wait_for FILE PATTERN SECONDS: until FILE contains PATTERN.
# By the clock: in a loaded L1 each grep can take longer than the pause.
wait_for() {
    local end=$((SECONDS + $3))
    while :; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        ((SECONDS < end)) || break
        sleep 0.1
    done
    echo "LAB: '$2' did not appear in $1 within $3 s"
    return 1
}
