#!/usr/bin/env bash
# The real browser the page's tests drive: Debian's chromium, through Playwright for Python's executable_path
# (never `playwright install`, which downloads a browser from elsewhere). Installed as root where it is missing;
# elsewhere the tests that need it skip, saying this command.
#   bash scripts/install_browser.sh
set -euo pipefail
# A CJK font too, or the shipped questions show as boxes in the page's screenshots (docs/ui/).
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no chromium here, and this is not root on Debian: the page's browser tests will skip (as root: apt-get install -y chromium)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
packages=(chromium fonts-wqy-microhei)
apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null 2>&1 || {
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
}
command -v chromium >/dev/null
