#!/usr/bin/env bash
# Debian's chromium and ffmpeg, when missing, and firefox-esr for Firefox jobs. Playwright cannot
# download its own browsers on machines without internet; these are what Sojourn falls back to.
# Firefox is optional: it is installed where this script may install packages (root with apt-get),
# unless SOJOURN_FIREFOX_EXECUTABLE names one or SOJOURN_SKIP_FIREFOX=1; elsewhere it is only suggested.
# With --test (make test): haproxy too, the balancer tests/test_prefect_ha.py puts in front of Prefect replicas.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || [ -n "${SOJOURN_CHROMIUM_EXECUTABLE:-}" ] || missing+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
optional=()
if [ "${SOJOURN_SKIP_FIREFOX:-}" != 1 ] && [ -z "${SOJOURN_FIREFOX_EXECUTABLE:-}" ] \
   && ! command -v firefox-esr >/dev/null 2>&1 && ! command -v firefox >/dev/null 2>&1 \
   && ! compgen -G "${PLAYWRIGHT_BROWSERS_PATH:-$HOME/.cache/ms-playwright}/firefox-*/firefox/firefox" >/dev/null; then
  optional+=(firefox-esr)
fi
if [ "${1:-}" = --test ] && ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  optional+=(haproxy)
fi
[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0
can_install=0
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && can_install=1
if [ $can_install = 1 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" "${optional[@]}" | sed '/^$/d' | sort -u | tr '\n' ' ')
  echo "installing Debian packages: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  exit 0
fi
if [[ " ${optional[*]} " == *" firefox-esr "* ]]; then
  echo "Firefox jobs need a Firefox: sudo apt-get install -y firefox-esr (or set SOJOURN_FIREFOX_EXECUTABLE)" >&2
fi
if [[ " ${optional[*]} " == *" haproxy "* ]]; then
  echo "The Prefect failover test needs haproxy: sudo apt-get install -y haproxy (without it, it is skipped)" >&2
fi
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo "Sojourn needs: $pkgs. Install them with:" >&2
echo "  sudo apt-get install -y $pkgs" >&2
echo "(or set SOJOURN_CHROMIUM_EXECUTABLE to a Chromium you have)" >&2
exit 1
