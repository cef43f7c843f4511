#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages, for trying segact's cluster
# path (launcher=submitit_slurm) and for the tests marked `slurm`.
#
#   scripts/slurm_local.sh start    # install slurm-wlm + munge if missing, start munged,
#                                   # slurmctld, slurmd; wait until the node is idle
#   eval "$(scripts/slurm_local.sh env)"   # SLURM_CONF for sbatch/squeue in this shell
#   scripts/slurm_local.sh status   # sinfo, or "not running" (exit 1)
#   scripts/slurm_local.sh stop     # ends exactly the daemons `start` started, by pid
#
# Everything lives in $SEGACT_SLURM_DIR (default /tmp/segact-slurm): its own slurm.conf (one CPU
# partition `debug` sized from nproc and the free memory, no accounting), state, logs, pid files
# and munge key. Nothing in /etc is changed. Needs root (the daemons run as root) and apt-get
# where the packages are missing.
set -euo pipefail

DIR=${SEGACT_SLURM_DIR:-/tmp/segact-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null &&
        return 0
    echo "slurm_local: installing slurm-wlm and munge (apt-get)" >&2
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
    "${apt[@]}" install slurm-wlm munge >"$DIR/apt.log" 2>&1 ||
        { "${apt[@]}" update && "${apt[@]}" install slurm-wlm munge; } >>"$DIR/apt.log" 2>&1 || {
            echo "slurm_local: apt-get install slurm-wlm munge failed; see $DIR/apt.log" >&2
            exit 1
        }
}

write_conf() {
    local cpus memory
    cpus=$(nproc)
    # what slurmd may hand out: the available memory less 1 GiB for the system, in MB
    memory=$(awk '/MemAvailable/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    cat >"$CONF" <<EOF
ClusterName=segact
SlurmctldHost=$NODE
AuthType=auth/munge
AuthInfo=socket=$DIR/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=${SEGACT_SLURM_PORT:-16817}
SlurmdPort=$(( ${SEGACT_SLURM_PORT:-16817} + 1 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=15
MinJobAge=300
NodeName=$NODE CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

running() {
    [[ -f $DIR/slurmctld.pid ]] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null
}

wait_idle() {
    local state
    for _ in $(seq 60); do
        state=$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        [[ $state == idle* || $state == mixed* || $state == allocated* ]] && return 0
        sleep 1
    done
    echo "slurm_local: the node did not become idle in 60 s (state: ${state:-none});" \
        "logs in $DIR" >&2
    return 1
}

start() {
    mkdir -p "$DIR"/{state,spool}
    if running; then
        echo "slurm_local: already running (SLURM_CONF=$CONF)"
        return 0
    fi
    install
    write_conf
    [[ -f $DIR/munge.key ]] || dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 2>/dev/null
    chmod 600 "$DIR/munge.key"
    munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge.seed"
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    wait_idle || { stop >/dev/null; exit 1; }  # leave nothing half started behind
    echo "slurm_local: running; partition debug, $(nproc) CPUs; SLURM_CONF=$CONF"
}

stop() {
    local name pid
    for name in slurmd slurmctld munged; do
        [[ -f $DIR/$name.pid ]] || continue
        pid=$(cat "$DIR/$name.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        rm -f "$DIR/$name.pid"
    done
    echo "slurm_local: stopped"
}

case ${1:-status} in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    status)
        running || { echo "slurm_local: not running"; exit 1; }
        state=$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        [[ $state == idle* || $state == mixed* || $state == allocated* ]] ||
            { echo "slurm_local: running, but the node is ${state:-unknown}"; exit 1; }
        SLURM_CONF=$CONF sinfo ;;
    *) echo "usage: scripts/slurm_local.sh start|stop|status|env" >&2; exit 2 ;;
esac
