#!/usr/bin/env bash
# System tools the pipeline runs: sox (+ formats), ffmpeg, Rubber Band, FluidSynth and a GM soundfont;
# and Chromium, the headless browser tests/flows/test_ui_browser.py drives the Prefect UI with (through playwright).
# As root on Debian/Ubuntu they are installed with apt; otherwise we say exactly what is missing.
set -euo pipefail
PKGS=(sox libsox-fmt-all ffmpeg rubberband-cli fluidsynth fluid-soundfont-gm espeak-ng chromium chromium-driver)
missing=()
for tool in sox ffmpeg ffprobe rubberband fluidsynth espeak-ng; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=("FluidR3_GM.sf2")
[ -x /usr/bin/chromium ] || missing+=("chromium")
ldconfig -p 2>/dev/null | grep -q libfluidsynth || missing+=("libfluidsynth")
[ -e /usr/lib/x86_64-linux-gnu/sox/libsox_fmt_mp3.so ] || [ -n "$(ls /usr/lib/*/sox/libsox_fmt_mp3.so 2>/dev/null)" ] || missing+=("libsox-fmt-all")
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "missing system tools: ${missing[*]}"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing with apt: ${PKGS[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
  echo "system tools installed"
else
  echo "Install them as root, e.g.: sudo apt-get install ${PKGS[*]}" >&2
  echo "(on other systems: sox with mp3/flac support, ffmpeg with ffprobe, rubberband CLI, fluidsynth with its library, the FluidR3_GM soundfont at /usr/share/sounds/sf2/FluidR3_GM.sf2, Chromium at /usr/bin/chromium)" >&2
  exit 1
fi
