#!/usr/bin/env bash
# Debian packages the project uses for real (ffmpeg for audio/video, espeak-ng + sox for test speech,
# chromium + chromium-driver for the browser test of the Gradio demo, tests/test_app_browser.py).
# Installs only what is missing; needs root (CI and the dev machines run as root) or sudo.
set -euo pipefail
need=()
command -v ffmpeg    >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox       >/dev/null 2>&1 || need+=(sox)
command -v chromium     >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
