#!/usr/bin/env bash
# Prepares .gpu/: everything the WebGPU checks need on a machine that has a GPU and its Vulkan driver but no
# Deno, no npm and no network. Run here (where npm and apt work), then carry .gpu to the GPU machine and run
# `bash .gpu/run.sh OUT_DIR` there.
#
#   bash bench/gpu/prepare.sh [OUT]      # writes OUT (default .gpu/, about 40 MB)
#
# .gpu/ holds: deno.xz (this Deno, compressed), bench.js and tests.js (deno bundle of bench/bench.ts and of the
# WebGPU tests, npm packages included), debs/ (Debian's Vulkan loader, unpacked there only if the machine has
# none), run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
DENO_VERSION=2.9.6
deno_bin() { npx -y "deno@$DENO_VERSION" "$@"; }
out=${1:-.gpu}
case "$out" in /* | ./* | .*) ;; *) out="./$out" ;; esac
rm -rf "$out" && mkdir -p "$out/debs"
deno_bin bundle --platform deno -o "$out/bench.js" bench/bench.ts
deno_bin bundle --platform deno -o "$out/tests.js" bench/gpu/webgpu_tests.ts
exe=$(deno_bin eval --quiet 'console.log(Deno.execPath())')
xz -T2 -6 -c "$exe" > "$out/deno.xz"
(cd "$out/debs" && apt-get download libvulkan1 >/dev/null 2>&1) || {
  echo "apt-get download libvulkan1 failed (run apt-get update?); the GPU machine must then have a Vulkan loader" >&2
}
cp bench/gpu/run.sh "$out/run.sh"
git rev-parse HEAD > "$out/commit"
du -sh "$out"
