#!/usr/bin/env bash
# Debian's chromium and ffmpeg, when missing. Playwright cannot download its own
# browsers on machines without internet; these are what Sojourn falls back to.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || [ -n "${SOJOURN_CHROMIUM_EXECUTABLE:-}" ] || missing+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
else
  echo "Sojourn needs: $pkgs. Install them with:" >&2
  echo "  sudo apt-get install -y $pkgs" >&2
  echo "(or set SOJOURN_CHROMIUM_EXECUTABLE to a Chromium you have)" >&2
  exit 1
fi
