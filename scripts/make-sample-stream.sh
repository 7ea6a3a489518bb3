#!/usr/bin/env bash
# Builds examples/sample/shopping.mp4, the demo's sample live-shopping stream, from real photos
# of everyday products, with a slow zoom and pan on each (camera motion) and empty gaps between
# them, plus the product pictures of the demo catalog (examples/sample/images/).
#
# Photos and where they come from (all fetched through package registries):
#   coffee.png  cup          scikit-image wheel (PyPI), skimage/data/coffee.png
#                            (Rachel Michetti, CC0, as stated in skimage/data/README.txt)
#   apple.jpg   apple        Debian opencv-doc, examples/data/apple.jpg (OpenCV sample data, BSD/Apache-2.0)
#   fruits.jpg  orange       Debian opencv-doc, examples/data/fruits.jpg (OpenCV sample data)
#
# Timeline (media time, seconds). tests/ and examples/demo-catalog.jsonl rely on it:
#   0-3 empty | 3-11 cup | 11-14 empty | 14-22 apple | 22-25 empty | 25-33 orange | 33-36 empty
# Usage: scripts/make-sample-stream.sh [WORKDIR]   (needs ffmpeg, pip, apt-get)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
if [ ! -d ocv ]; then apt-get download -qq opencv-doc && dpkg -x opencv-doc_*.deb ocv; fi
if [ ! -d sk ]; then
  pip download -q --no-deps -d wheels scikit-image==0.26.0
  mkdir -p sk && (cd sk && unzip -q -o ../wheels/scikit_image-*.whl 'skimage/data/coffee.png' 'skimage/data/README.txt')
fi
data=ocv/usr/share/doc/opencv-doc/examples/data
cp sk/skimage/data/coffee.png "$data/apple.jpg" "$data/fruits.jpg" .

W=1280 H=720 FPS=25
# A keyframe every second, as live encoders send (OBS, IVS: 1-2 s), so HLS can cut 1 s segments.
GOP="-g $FPS -keyint_min $FPS -sc_threshold 0"
gap() { # seconds -> a plain studio-grey clip
  ffmpeg -loglevel error -y -f lavfi -i "color=c=0x303438:s=${W}x${H}:r=$FPS:d=$1" -pix_fmt yuv420p \
    -c:v libx264 -preset veryfast -crf 26 $GOP "gap_$1_$2.mp4"
}
shot() { # photo seconds name -> the photo letterboxed into 16:9 with a slow zoom-in and pan (camera motion)
  local frames=$(( $2 * FPS ))
  ffmpeg -loglevel error -y -loop 1 -i "$1" -t "$2" -vf \
    "scale=${W}:${H}:force_original_aspect_ratio=decrease,pad=${W}:${H}:(ow-iw)/2:(oh-ih)/2:color=0x303438,\
scale=$((W*2)):$((H*2)),zoompan=z='1+0.15*on/$frames':x='(iw-iw/zoom)*on/$frames':y='(ih-ih/zoom)/2':d=1:s=${W}x${H}:fps=$FPS" \
    -pix_fmt yuv420p -c:v libx264 -preset veryfast -crf 26 $GOP "$3.mp4"
}
gap 3 a; shot coffee.png 8 cup; gap 3 b; shot apple.jpg 8 apple; gap 3 c; shot fruits.jpg 8 orange
gap 3 d
printf "file '%s'\n" gap_3_a.mp4 cup.mp4 gap_3_b.mp4 apple.mp4 gap_3_c.mp4 orange.mp4 gap_3_d.mp4 > list.txt
ffmpeg -loglevel error -y -f concat -safe 0 -i list.txt -c copy -movflags +faststart "$root/examples/sample/shopping.mp4"

# Catalog pictures: the product cut out of its own photo (crop boxes found with the SSD reference script).
mkdir -p "$root/examples/sample/images"
ffmpeg -loglevel error -y -i coffee.png -vf "crop=300:260:130:80,scale=240:-2" "$root/examples/sample/images/mug.jpg"
ffmpeg -loglevel error -y -i apple.jpg -vf "scale=240:-2" "$root/examples/sample/images/apple.jpg"
ffmpeg -loglevel error -y -i fruits.jpg -vf "crop=220:220:250:200,scale=240:-2" "$root/examples/sample/images/orange.jpg"
ls -la "$root/examples/sample" "$root/examples/sample/images"
