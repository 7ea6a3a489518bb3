#!/usr/bin/env bash
# Writes models/zoo/mobilenetv2-imagenet-embedder/centre.txt, the embedder's mean embedding over
# everyday photos from package registries that neither labelled show uses
# (models/zoo/mobilenetv2-imagenet-embedder/reference/make_centre.py says which).
# Usage: scripts/make-embedder-centre.sh [WORKDIR]   (needs apt-get, pip and a Python with
# onnxruntime 1.32.0, Pillow and numpy, e.g. .vitrine/peer/bin/python from scripts/bench.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.vitrine/peer/bin/python}
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
source "$root/scripts/fetch-photo-packages.sh"
zoo=$root/models/zoo/mobilenetv2-imagenet-embedder
"$python" "$zoo/reference/make_centre.py" tux/usr/share/tuxpaint/stamps ocv/usr/share/doc/opencv-doc/examples/data \
  sk/skimage/data "$zoo/centre.txt"
