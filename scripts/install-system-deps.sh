#!/usr/bin/env bash
# Installs the Debian packages gpu-rental-tracker needs beside Python, when they are missing:
#   chromium        the browser the Hengyuan scraper drives (Playwright cannot download its own here)
#   prometheus      the real Prometheus (and promtool) the end-to-end metric tests run against
#   fonts-noto-cjk  CJK glyphs for the report's PNG chart and the HTML screenshot
# and makes sure the local PostgreSQL the scale-out tests use is running.
#   --runtime   only what `tracker run` needs (chromium)
set -euo pipefail

want=(chromium prometheus fonts-noto-cjk)
[[ "${1:-}" == "--runtime" ]] && want=(chromium)

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: missing Debian packages ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} …" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" != "--runtime" ]]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
      echo "starting the local PostgreSQL …" >&2
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    pg_isready -q -h 127.0.0.1 -p 5432 || {
      echo "error: the PostgreSQL tests need a server on 127.0.0.1:5432 (trust auth, database 'test')" >&2
      exit 1
    }
  fi
fi
