#!/usr/bin/env bash
# Runs the WebGPU checks on a machine with a GPU, from the folder bench/gpu/prepare.sh wrote (carried as .gpu):
# the WebGPU tests, then the benchmark of the two nets with our kernels and with TF.js's, then the per-kernel
# mode. Results go to OUT_DIR (tests.txt, models.jsonl, models_stock.jsonl, kernels.jsonl, log.txt). Each step
# has its own time limit, 590 s in all (a device machine's command may run 600 s); what ran is kept. `quick` runs everything at tiny sizes (a check of the bundle itself, on any adapter).
#
#   bash .gpu/run.sh OUT_DIR [quick]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: run.sh OUT_DIR [quick]}
if [ "${2:-}" = quick ]; then
  models=(--model mnist_a --seconds 0.01) kernels=(--batch 2 --rounds 1 --only "mnist_a")
else
  models=(--model all --seconds 5) kernels=(--rounds 3)
fi
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
echo "commit $(cat "$here/commit"), $(date -u +%FT%TZ), $(nproc) cores"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
# The Vulkan loader, where the machine has none (an ICD without a loader is invisible to Deno).
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  for f in "$here"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi
done
deno=$(mktemp -d)/deno
xz -dc "$here/deno.xz" > "$deno" && chmod +x "$deno"
export DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
run() { echo "+ $*" >&2; "$@"; }
status=0
run timeout 120 "$deno" test -A --no-check "$here/tests.js" > "$out/tests.txt" 2>&1 || status=1
tail -3 "$out/tests.txt"
bench() {
  local limit=$1
  shift
  timeout "$limit" "$deno" run -A --no-check --v8-flags=--expose-gc "$here/bench.js" --backend webgpu "$@"
}
run bench 120 "${models[@]}" > "$out/models.jsonl" || status=1
cat "$out/models.jsonl"
run bench 150 --stock "${models[@]}" > "$out/models_stock.jsonl" || status=1
cat "$out/models_stock.jsonl"
run bench 200 --kernels "${kernels[@]}" > "$out/kernels.jsonl" || status=1
cat "$out/kernels.jsonl"
exit $status
