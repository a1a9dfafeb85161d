#!/usr/bin/env bash
# Submits an experiment as a Slurm job array of N shards (scale/slurm/figure3.sbatch) and a merge job that starts
# when every task of the array has succeeded (--dependency=afterok), and prints their ids:
#
#   scale/slurm/submit.sh N [--wait] [sbatch options for both jobs...]
#   -> array_job_id=12
#      merge_job_id=13
#
# EXPERIMENT (default figure3), EXPERIMENT_FLAGS and DENO are passed to the jobs (see figure3.sbatch). Run it from
# the repository: the jobs start there. Logs: $LOG_DIR (default .cache/slurm)/<experiment>-<job>_<task>.out.
# With --wait, it then waits for the merge job and exits 0 only when it completed (if a task fails, the merge job
# is cancelled and this exits 1), printing the final state of every job.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
n=${1:-}
[[ $n =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: $0 N [--wait] [sbatch options...]   (N: the number of shards, at least 1)" >&2
  exit 2
}
shift
wait=0
if [ "${1:-}" = --wait ]; then
  wait=1
  shift
fi
experiment=${EXPERIMENT:-figure3}
export EXPERIMENT=$experiment
logs=${LOG_DIR:-.cache/slurm}
mkdir -p "$logs"

array=$(sbatch --parsable --job-name="$experiment" --array="0-$((n - 1))" \
  --output="$logs/%x-%A_%a.out" "$@" "$here/figure3.sbatch")
array=${array%%;*}
merge=$(MERGE=1 sbatch --parsable --job-name="$experiment-merge" --dependency="afterok:$array" \
  --kill-on-invalid-dep=yes --output="$logs/%x-%j.out" "$@" "$here/figure3.sbatch")
merge=${merge%%;*}
echo "array_job_id=$array"
echo "merge_job_id=$merge"
[ "$wait" = 1 ] || exit 0

# The state of job $1 (an array prints one line per task); empty once Slurm forgot it (MinJobAge, 300 s).
state() {
  scontrol show job -o "$1" 2>/dev/null | sed -nE 's/.*JobState=([A-Z_]+).*/\1/p' | sort | uniq -c | xargs || true
}
final="" unknown=0
while :; do
  final=$(state "$merge")
  case "$final" in
  *PENDING* | *RUNNING* | *CONFIGURING* | *COMPLETING* | *REQUEUED* | *RESIZING* | *SUSPENDED*) sleep 1 ;;
  "") # scontrol failed, or the job is forgotten: look a few more times.
    unknown=$((unknown + 1))
    [ "$unknown" -lt 10 ] || break
    sleep 1
    ;;
  *) break ;;
  esac
done
echo "array job $array: $(state "$array")" >&2
echo "merge job $merge: ${final:-unknown}" >&2
[[ $final == *COMPLETED* ]] || {
  echo "submit.sh: the merge job did not complete; see the logs in $logs" >&2
  exit 1
}
