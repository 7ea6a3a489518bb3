#!/usr/bin/env bash
# Fetches the packages the labelled shows and the embedder's centre are made from into the
# current folder, unless already there (sourced by make-labelled-show.sh, make-market-show.sh
# and make-embedder-centre.sh): ocv/ (Debian opencv-doc 4.6.0), tux/ (Debian
# tuxpaint-stamps-default 2022.06.04), sk/skimage/data/ (the scikit-image 0.26.0 wheel's data).
if [ ! -d ocv ]; then apt-get download -qq opencv-doc=4.6.0+dfsg-12 && dpkg -x opencv-doc_*.deb ocv; fi
if [ ! -d tux ]; then apt-get download -qq tuxpaint-stamps-default=2022.06.04-1 && dpkg -x tuxpaint-stamps-default_*.deb tux; fi
if [ ! -d sk ]; then
  pip download -q --no-deps -d wheels scikit-image==0.26.0
  mkdir -p sk && (cd sk && unzip -q -o ../wheels/scikit_image-*.whl 'skimage/data/*')
fi
