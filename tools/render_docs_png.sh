#!/usr/bin/env bash
# Screenshot a `lowbit report` directory with headless Chromium (Debian's chromium, from scripts/setup.sh), e.g.
# for docs/quick-study.png. By default the three plots side by side; with --page, report.html itself (the
# top PAGE_HEIGHT pixels, default 2400, at 1200 px wide: Chromium captures the window, not the whole page).
# Usage: tools/render_docs_png.sh REPORT_DIR OUT.png [--page]
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ] || { [ $# -eq 3 ] && [ "$3" != "--page" ]; }; then
  echo "usage: $0 REPORT_DIR OUT.png [--page]" >&2
  exit 2
fi
DIR=$(cd "$1" && pwd)
OUT=$2
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "$0: $CHROMIUM not found (scripts/setup.sh installs chromium)" >&2; exit 1; }
for f in report.html ppl_vs_bits.svg acc_vs_bits.svg kld_vs_bits.svg; do
  [ -f "$DIR/$f" ] || { echo "$0: $DIR/$f not found: not a lowbit report directory" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ $# -eq 3 ]; then
  PAGE="$DIR/report.html"
  SIZE="1200,${PAGE_HEIGHT:-2400}"
else
  # One page holding the three SVGs inline, sized to them (each SVG states its width and height).
  PAGE="$TMP/plots.html"
  W=0
  H=0
  {
    echo '<!DOCTYPE html><html><head><meta charset="utf-8"/>'
    echo '<style>body{margin:10px;background:#fff}div{display:flex;gap:10px;align-items:flex-start}</style>'
    echo '</head><body><div>'
    for f in ppl_vs_bits acc_vs_bits kld_vs_bits; do
      cat "$DIR/$f.svg"
    done
    echo '</div></body></html>'
  } >"$PAGE"
  for f in ppl_vs_bits acc_vs_bits kld_vs_bits; do
    w=$(grep -o -m1 '<svg[^>]*' "$DIR/$f.svg" | grep -o ' width="[0-9.]*"' | grep -o '[0-9.]*' | cut -d. -f1)
    h=$(grep -o -m1 '<svg[^>]*' "$DIR/$f.svg" | grep -o ' height="[0-9.]*"' | grep -o '[0-9.]*' | cut -d. -f1)
    W=$((W + w + 10))
    [ "$h" -gt "$H" ] && H=$h
  done
  SIZE="$((W + 10)),$((H + 20))"
fi

timeout 60 "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --no-first-run \
  --force-color-profile=srgb --force-device-scale-factor=1 --window-size="$SIZE" \
  --user-data-dir="$TMP/profile" --screenshot="$TMP/shot.png" "file://$PAGE" >"$TMP/log" 2>&1 || {
  echo "$0: chromium failed:" >&2
  tail -5 "$TMP/log" >&2
  exit 1
}
if grep -q ':CONSOLE' "$TMP/log"; then
  echo "$0: console errors while rendering:" >&2
  grep ':CONSOLE' "$TMP/log" >&2
  exit 1
fi
cp "$TMP/shot.png" "$OUT"
echo "wrote $OUT ($SIZE)"
