#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz (libFuzzer through cargo fuzz, nightly Rust) for a
# bounded time each, starting from the corpus in tests/fuzz/corpus/<target>/ (what a run
# finds that covers new code is added there: commit it). A crash stops the script with the
# failing input under tests/fuzz/artifacts/<target>/: make it a regression test named after
# it (tests/fuzz/regressions/ holds them; `scripts/fuzz.sh --regressions` replays them).
#
#   scripts/fuzz.sh               every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh jpeg_decode   one target
#   scripts/fuzz.sh --regressions replay every saved crash input, no fuzzing
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/tests/fuzz"
seconds=${FUZZ_SECONDS:-60}
# cargo-fuzz and the instrumented build are kept between runs (as CI keeps its target folder).
tools=${VITRINE_TOOLS:-$HOME/.cache/vitrine/tools}
CARGO_FUZZ_VERSION=0.13.1

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io) into $tools"
  cargo install -q --locked --version "$CARGO_FUZZ_VERSION" --root "$tools" cargo-fuzz
fi
export PATH=$tools/bin:$PATH
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}/fuzz

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^vitrine-fuzz$')
if [ "${1:-}" = "--regressions" ]; then
  shift
  for target in $targets; do
    inputs=$(ls regressions/"$target"/* 2>/dev/null || true)
    [ -z "$inputs" ] && continue
    echo "== $target: replaying $(echo "$inputs" | wc -l) saved crash input(s)"
    # shellcheck disable=SC2086
    cargo +nightly fuzz run -s none --fuzz-dir . "$target" $inputs -- -runs=0
  done
  exit 0
fi
[ -n "${1:-}" ] && targets=$1

# No AddressSanitizer (-s none): its flags break librdkafka's configure script ("Argument list
# too long"), and connectors links librdkafka. Panics, overflow checks and debug assertions
# stay on (release with debug assertions, cargo fuzz's default).
echo "fuzz: building $(echo "$targets" | wc -w) target(s) (instrumented, release, debug assertions)"
for target in $targets; do
  if ! log=$(cargo +nightly fuzz build -s none --fuzz-dir . "$target" 2>&1); then
    echo "$log" | grep -v '^ *Compiling' >&2
    echo "fuzz: building $target failed" >&2
    exit 1
  fi
done
for target in $targets; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target: ${seconds}s"
  # One process, 2 GB of memory, frames up to 1 MB; the corpus folder gets what is new.
  cargo +nightly fuzz run -s none --fuzz-dir . "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written)" \
    || true
  if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
    echo "fuzz: $target crashed; the input is in tests/fuzz/artifacts/$target/ (see above)" >&2
    exit 1
  fi
done
echo "fuzz: ok ($seconds s a target, no crash)"
