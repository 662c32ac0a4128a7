#!/usr/bin/env bash
# Installs Debian's chromium for the wall's headless-browser test (tests/integration/test_wall_browser.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo) for apt-get.
# The test drives this browser with Playwright (`executable_path=/usr/bin/chromium`); Playwright's own
# browser download (`playwright install`) is never used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-browser.sh: $CHROMIUM is missing and this is not root (no sudo): install Debian's chromium" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-noto-cjk: the wall's Chinese labels; fonts-dejavu-core: Latin fallback
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk fonts-dejavu-core >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "install-browser.sh: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "install-browser.sh: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
