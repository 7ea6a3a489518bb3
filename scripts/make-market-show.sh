#!/usr/bin/env bash
# Builds examples/market-show/: vitrine's second labelled show (show.mp4, 102 s), and its
# catalog's pictures (pictures/*.jpg). It is the show that no setting is chosen on: defaults are
# chosen on examples/show and reported here (docs/eval.md). Its catalog picture of each product
# is another photo or another view of it than the one on screen; two products share a label (a
# green and a red apple); and the show holds things the shop does not sell (a potato, a teapot,
# a basketball, a clock, toys, a dog). examples/market-show/truth.yaml says what is on screen
# when; it was written from the stills, not from any detector's output.
#
# Photos and where they come from (all fetched through package registries):
#   Debian opencv-doc 4.6.0, examples/data (OpenCV sample data, BSD-3-Clause/Apache-2.0):
#     stuff.jpg (the table), aloeL.jpg / aloeR.jpg (the Middlebury stereo pair "Aloe": on screen
#     and catalog), orange.jpg, rubberwhale1.png (toys: Middlebury optical-flow data), chicky_512.png
#   scikit-image 0.26.0 wheel (PyPI, BSD-3-Clause), skimage/data/motorcycle_left.png / _right.png
#     (Middlebury 2014 stereo benchmark, Scharstein et al.: on screen and catalog)
#   Debian tuxpaint-stamps-default 2022.06.04 (GPL-2, (c) 2002-2022 Bill Kendrick and the Tux
#     Paint contributors): food/fruit/{apple_granny_smith,apple_sierra_beauty} (on screen),
#     food/fruit/{apple_green,apple_fuji,orange} (catalog), food/vegetables/potato,
#     household/dishes/teapot, sports/basketball, symbols/clockface (not sold).
#     show.mp4 and pictures/ contain these, so they are distributed under the GPL-2
#     (examples/market-show/LICENSE).
#
# Timeline: examples/market-show/truth.yaml (keep both in step when changing either).
# Usage: scripts/make-market-show.sh [WORKDIR]   (needs ffmpeg, apt-get, pip and a Python with
# Pillow, e.g. .vitrine/peer/bin/python from scripts/bench.sh; PYTHON=... picks another)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.vitrine/peer/bin/python}
out=$root/examples/market-show
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
source "$root/scripts/fetch-photo-packages.sh"
rm -rf stills && "$python" "$root/scripts/compose-market-show.py" ocv/usr/share/doc/opencv-doc/examples/data \
  tux/usr/share/tuxpaint/stamps sk/skimage/data stills "$out/pictures"

W=1280 H=720 FPS=25
GOP="-g $FPS -keyint_min $FPS -sc_threshold 0"
n=0
clips=()
shot() { # still seconds -> the still with a slow zoom-in and pan (camera motion)
  local frames
  frames=$(awk "BEGIN { print int($2 * $FPS + 0.5) }")
  n=$((n + 1))
  ffmpeg -loglevel error -y -loop 1 -i "stills/$1.png" -frames:v "$frames" -vf \
    "zoompan=z='1+0.1*on/$frames':x='(iw-iw/zoom)*on/$frames':y='(ih-ih/zoom)/2':d=1:s=${W}x${H}:fps=$FPS" \
    -pix_fmt yuv420p -c:v libx264 -preset veryfast -crf 28 $GOP "clip_$n.mp4"
  clips+=("clip_$n.mp4")
}
shot grey 2;  shot aloe 8;        shot grey 2;  shot table-granny 8;  shot table 2
shot table-potato-teapot 8;       shot grey 2;  shot motorcycle 8;    shot grey 2
shot sierra 8; shot grey 2;       shot ball-clock 8;                  shot grey 2
shot table-two-apples 8;          shot grey 2;  shot orange 8;        shot grey 2
shot toys 8;  shot grey 2;        shot dog 8;   shot grey 2
printf "file '%s'\n" "${clips[@]}" > list.txt
ffmpeg -loglevel error -y -f concat -safe 0 -i list.txt -c copy -movflags +faststart "$out/show.mp4"
ls -la "$out/show.mp4" "$out/pictures"
