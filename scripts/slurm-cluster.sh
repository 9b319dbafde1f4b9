#!/usr/bin/env bash
# A two-node Slurm 22.05 cluster on this one machine, to try `executor: slurm` (and for the
# tests): one slurmctld and two slurmd daemons (n1, n2) on 127.0.0.1, every file in DIR.
# Needs root and Debian's `slurmctld slurmd slurm-client` (scripts/setup-debian.sh installs them).
# Authentication is off (`auth/none`): for a test box only, never for a real cluster.
#
#   scripts/slurm-cluster.sh start DIR     # writes DIR/slurm.conf, starts the daemons, waits
#   export SLURM_CONF=DIR/slurm.conf       # then sbatch/squeue/auditai talk to it
#   scripts/slurm-cluster.sh stop DIR      # stops the daemons by PID
set -euo pipefail
cmd="${1:?usage: slurm-cluster.sh start|stop DIR}"
dir="$(mkdir -p "${2:?usage: slurm-cluster.sh start|stop DIR}" && cd "$2" && pwd)"
conf="$dir/slurm.conf"

stop() {
  for pid in "$dir"/*.pid; do
    [ -f "$pid" ] || continue
    kill "$(cat "$pid")" 2> /dev/null || true
  done
  # Daemons exit within a second; their pid files go with them.
  for _ in $(seq 50); do
    alive=0
    for pid in "$dir"/*.pid; do
      [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2> /dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  rm -f "$dir"/*.pid
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: slurm-cluster.sh start|stop DIR" >&2; exit 2; }
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))
host=$(hostname)
mkdir -p "$dir/state" "$dir/spool/n1" "$dir/spool/n2"
cat > "$conf" <<EOF
ClusterName=auditai-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
SlurmUser=root
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
KillWait=2
OverTimeLimit=0
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=${NODE1_PORT:-17001} CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=${NODE2_PORT:-17002} CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF="$conf"
stop
slurmctld -i -f "$conf"
slurmd -N n1 -f "$conf"
slurmd -N n2 -f "$conf"
for _ in $(seq 100); do
  if [ "$(sinfo -h -o '%t' 2> /dev/null | grep -c 'idle')" -ge 1 ] \
    && sinfo -h -N -o '%N %t' 2> /dev/null | grep -q 'n2 idle'; then
    echo "slurm: nodes n1 n2 up; export SLURM_CONF=$conf"
    exit 0
  fi
  sleep 0.2
done
echo "slurm did not come up; see $dir/*.log" >&2
sinfo -N >&2 || true
exit 1
