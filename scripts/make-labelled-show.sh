#!/usr/bin/env bash
# Builds examples/show/show.mp4, vitrine's labelled show: 113 s of a live-shopping stream made of
# real photos, with the hard cases a detector meets on a real show (small products on a
# cluttered table, thin products, a picture of no product that looks like some, a short cut
# away inside a product's segment, several products at once). examples/show/truth.yaml says
# what is on screen when; it was written from the frames, not from any detector's output.
#
# Photos and where they come from (all fetched through package registries):
#   Debian opencv-doc 4.6.0, examples/data (OpenCV sample data, BSD-3-Clause/Apache-2.0):
#     stuff.jpg (the table and its clutter), orange.jpg, smarties.png (sweets: no product),
#     ela_original.jpg (a notebook), fruits.jpg, messi5.jpg (a football)
#   scikit-image 0.26.0 wheel (PyPI), skimage/data/coffee.png (Rachel Michetti, CC0)
#   Debian tuxpaint-stamps-default 2022.06.04 (GPL-2, (c) 2002-2022 Bill Kendrick and the
#     Tux Paint contributors): cut-out product photos food/fruit/{apple_red,apple_fuji,banana,
#     orange}.png, food/vegetables/{broccoli,carrot}.png, household/dishes/mug.png,
#     household/arttools/scissors_small_open.png, sports/tennis_ball.png.
#     show.mp4 contains these, so it is distributed under the GPL-2 (examples/show/LICENSE).
# Catalog pictures (examples/show/pictures/, never a frame of the show): OpenCV's apple.jpg
#   (a red apple; on screen are Tux Paint's), Tux Paint's food/fruit/mandarine (an orange citrus;
#   on screen are orange.jpg, fruits.jpg and Tux Paint's orange) and
#   household/arttools/scissors_small_closed (the scissors closed; on screen they are open).
#
# Timeline: examples/show/truth.yaml (keep both in step when changing either).
# Usage: scripts/make-labelled-show.sh [WORKDIR]   (needs ffmpeg, apt-get, pip and a Python
# with Pillow, e.g. .vitrine/peer/bin/python from scripts/setup.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.vitrine/peer/bin/python}
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
source "$root/scripts/fetch-photo-packages.sh"
"$python" "$root/scripts/compose-show.py" ocv/usr/share/doc/opencv-doc/examples/data \
  tux/usr/share/tuxpaint/stamps sk/skimage/data stills "$root/examples/show/pictures"

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
shot grey 2;   shot cup 8;    shot grey 2;  shot orange 8; shot grey 2
shot table-apple-banana 8;    shot table 2; shot table-scissors-carrot 8
shot grey 2;   shot candy 8;  shot grey 2
shot ball 4;   shot grey 0.6; shot ball 4;  shot grey 2
shot table-market 8;          shot grey 2;  shot book 8;   shot grey 2
shot fruits 8; shot grey 2;   shot football 8
shot table 2;  shot table-mug 8;            shot grey 2.4
printf "file '%s'\n" "${clips[@]}" > list.txt
ffmpeg -loglevel error -y -f concat -safe 0 -i list.txt -c copy -movflags +faststart "$root/examples/show/show.mp4"
ls -la "$root/examples/show/show.mp4"
