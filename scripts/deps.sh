#!/usr/bin/env bash
# Installs what dasa's build, demo and tests need on Debian 12, skipping
# what is already there. Needs root only when something is missing.
set -euo pipefail

packages=(
  make gcc procps
  postgresql-15 postgresql-server-dev-15 libpq-dev
  postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
  python3-psycopg valgrind
)
# Node.js and npm for the example worker: the machine's own if it has them.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "dasa: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "dasa: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
