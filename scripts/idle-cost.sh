#!/usr/bin/env bash
# What an almost idle pipeline costs: one live stream at 0.5 frames/s (the sample show's
# frames), 2 workers; counts the context switches of every thread (wakeups) and the CPU time
# over 10 s, after 5 s of warm-up. Usage: scripts/idle-cost.sh [path/to/vitrine]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/release/vitrine}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ffmpeg -loglevel error -i "$root/examples/sample/shopping.mp4" -vf fps=5 -q:v 3 "$work/%05d.jpg"
cat > "$work/idle.yaml" <<SPEC
name: idle
sources:
  - {kind: frames, stream_id: idle, dir: $work, fps: 0.5, pace: realtime}
model:
  path: $root/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: $root/examples/demo-catalog.jsonl
  watch: false
workers: 2
SPEC
"$bin" run "$work/idle.yaml" 2>/dev/null &
pid=$!
sleep 5
switches() { cat /proc/$pid/task/*/status 2>/dev/null | awk '/voluntary_ctxt_switches/ {s += $2} END {print s}'; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
s0=$(switches); t0=$(ticks)
sleep 10
s1=$(switches); t1=$(ticks)
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "idle pipeline: $(( (s1 - s0) / 10 )) wakeups a second, $(awk -v t=$(( t1 - t0 )) -v hz="$hz" 'BEGIN {printf "%.1f", 100 * t / hz / 10}')% of a core"
