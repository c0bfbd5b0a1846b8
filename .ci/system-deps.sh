#!/usr/bin/env bash
# Debian packages the project uses for real, per purpose:
#   demo: ffmpeg (audio/video; imageio-ffmpeg also bundles one) and espeak-ng (the example speech, the app's
#         Speak box);
#   test: the demo's, plus chromium and chromium-driver for the browser test of the Gradio demo
#         (tests/test_app_browser.py).
# Usage: system-deps.sh [demo|test] [--list]   (--list prints the purpose's packages and installs nothing)
# Installs only what is missing; needs root (CI and the dev machines run as root) or sudo.
set -euo pipefail
mode="${1:-test}"
case "$mode" in
  demo) packages=(ffmpeg espeak-ng) ;;
  test) packages=(ffmpeg espeak-ng chromium chromium-driver) ;;
  *) echo "usage: $0 [demo|test] [--list]" >&2; exit 2 ;;
esac
if [ "${2:-}" = "--list" ]; then printf '%s\n' "${packages[@]}"; exit 0; fi
declare -A command_of=([ffmpeg]=ffmpeg [espeak-ng]=espeak-ng [chromium]=chromium [chromium-driver]=chromedriver)
need=()
for pkg in "${packages[@]}"; do
  command -v "${command_of[$pkg]}" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
