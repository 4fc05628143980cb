#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing:
#   postgresql - the migration tests also run against a throwaway PostgreSQL cluster;
#   chromium   - the dashboard's browser test drives Debian's chromium (never a downloaded one).
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages the tests need: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
    command -v sudo >/dev/null || {
        echo "run as root, or install them yourself: apt-get install ${missing[*]}" >&2
        exit 1
    }
else
    sudo=
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
