#!/usr/bin/env bash
# The analytics of the sample show: runs the bundled sample stream once, in real time, with the
# demo catalog (the mug's price drops from 14.90 to 12.90 at 7 s, while it is on screen), into
# Parquet under a temporary folder (or DIR), then answers each question of docs/analytics/*.sql
# with DuckDB. docs/analytics.md shows its output.
#   scripts/sample-analytics.sh [DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
mkdir -p "$out"
"$root/scripts/setup.sh" >/dev/null
cargo build -q --manifest-path "$root/Cargo.toml" -p vitrine-pipeline --bin vitrine
target=$(cargo metadata --manifest-path "$root/Cargo.toml" --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sed "s#\"sample/#\"$root/examples/sample/#" "$root/examples/demo-catalog.jsonl" > "$out/catalog.jsonl"
cat > "$out/sample.yaml" <<YAML
name: sample-analytics
sources:
  - kind: video
    stream_id: demo
    input: $root/examples/sample/shopping.mp4
    fps: 5
    pace: realtime
model:
  path: $root/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
  min_score: 0.3
debounce:
  min_score: 0.5
  hold: 1500ms
catalog:
  path: $out/catalog.jsonl
  watch: true
  poll: 200ms
sinks:
  parquet:
    path: $out/parquet
    roll_after: 10s
YAML
echo "sample-analytics: running the 36 s sample show into $out/parquet" >&2
"$target/debug/vitrine" run "$out/sample.yaml" 2> "$out/vitrine.log" &
pid=$!
sleep 7
sed -i 's/"price": 14.90/"price": 12.90/' "$out/catalog.jsonl"
wait "$pid" || { echo "sample-analytics: vitrine failed, see $out/vitrine.log" >&2; exit 1; }
PYTHONPATH="$root/.vitrine/python" python3 - "$out/parquet" "$root"/docs/analytics/*.sql <<'PY'
import sys, duckdb
root, queries = sys.argv[1], sys.argv[2:]
con = duckdb.connect()
for table in ["detections", "product_events", "exposures"]:
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = true)")
for path in queries:
    print(f"-- {path.rsplit('/', 1)[-1]}")
    con.sql(open(path).read()).show(max_width=200)
PY
