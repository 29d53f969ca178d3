#!/usr/bin/env bash
# Fetch the JavaScript the book loads from CDNs (MathJax 3, RequireJS and
# the ipywidgets embed manager) into book/vendor/, so the HTML works with
# no network: math is typeset and widgets render.
#
# book/vendor/ is git-ignored and never committed. When it exists, the local
# Sphinx extension book/_ext/book_vendor.py points the build at it; when it
# does not, the build uses the CDN defaults. Nothing else needs to change.
#
# `make book` runs this once, when book/vendor/ is missing; without npm it
# builds against the CDNs instead. Delete book/vendor/ to fetch again.
#
# Usage: bash book/tools/vendor_js.sh   (needs npm; ~25 s; ~16 MB on disk)
set -euo pipefail

HTML_MANAGER="@jupyter-widgets/html-manager@1.0.6"
REQUIREJS="requirejs@2.3.4"
MATHJAX="mathjax@3"

root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/book/vendor"

if ! command -v npm >/dev/null 2>&1; then
    echo "vendor_js.sh: npm was not found; install Node.js (which ships" \
         "npm, e.g. 'apt-get install npm' or https://nodejs.org) and run" \
         "it again." >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "vendor_js.sh: npm install $HTML_MANAGER $REQUIREJS $MATHJAX"
( cd "$work" \
  && npm init -y >/dev/null \
  && npm install --no-audit --no-fund --silent --prefer-offline \
       --fetch-retries=1 --fetch-timeout=30000 \
       "$HTML_MANAGER" "$REQUIREJS" "$MATHJAX" )

mods="$work/node_modules"
for need in "$mods/@jupyter-widgets/html-manager/dist/embed-amd.js" \
            "$mods/requirejs/require.js" \
            "$mods/mathjax/es5/tex-mml-chtml.js"; do
    if [ ! -f "$need" ]; then
        echo "vendor_js.sh: npm finished but $need is missing" >&2
        exit 1
    fi
done

# Build the new folder beside the old one, then swap: a failed run never
# leaves a half-filled book/vendor/ behind.
tmp_dest="$dest.tmp.$$"
rm -rf "$tmp_dest"
mkdir -p "$tmp_dest/html-manager"
cp "$mods/requirejs/require.js" "$tmp_dest/require.js"
# The AMD bundle and the icon fonts its CSS points at; not the plain
# (non-AMD) bundle, its chunks or the source maps (~20 MB).
hm="$mods/@jupyter-widgets/html-manager/dist"
cp "$hm/embed-amd.js" "$tmp_dest/html-manager/"
for font in "$hm"/*.woff "$hm"/*.woff2 "$hm"/*.ttf "$hm"/*.eot "$hm"/*.svg
do
    [ -f "$font" ] && cp "$font" "$tmp_dest/html-manager/"
done
# MathJax: the one combined component Sphinx loads (tex-mml-chtml.js) and
# the folders it loads lazily (TeX extensions, CHTML fonts, menu, a11y).
mkdir -p "$tmp_dest/mathjax"
cp "$mods/mathjax/es5/tex-mml-chtml.js" "$tmp_dest/mathjax/"
for part in a11y adaptors input output sre ui; do
    cp -R "$mods/mathjax/es5/$part" "$tmp_dest/mathjax/"
done
rm -rf "$tmp_dest/mathjax/output/svg"
rm -rf "$dest"
mv "$tmp_dest" "$dest"

echo "vendor_js.sh: wrote $dest ($(du -sh "$dest" | cut -f1))"
