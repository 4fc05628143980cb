#!/usr/bin/env bash
# Install LocalStack into its own virtual environment, localstack/.venv.
# LocalStack pins its own boto3/botocore, so it stays out of the project's .venv.
# LocalStack 4.14 needs Python >= 3.12 (the project runs on 3.11): set LOCALSTACK_PYTHON to
# choose the interpreter, otherwise the newest python3.13/python3.12 on PATH or under pyenv.
# Idempotent: does nothing when the pinned version is already installed. Installs into one venv
# are serialised (a lock in localstack/.data/): test sessions started together on a fresh
# machine wait for the first one's install instead of running pip into the same venv at once.
set -euo pipefail

# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
VERSION="4.14.0"
STAMP="$VENV/.installed-$VERSION"
LOG="$LOCALSTACK_DIR/.install.log"

installed() {
    [[ -f "$STAMP" ]] && "$VENV/bin/python" -c "import localstack" 2>/dev/null
}

if installed; then
    echo "localstack $VERSION already installed in $VENV"
    exit 0
fi
mkdir -p "$DATA"
exec 8>"$DATA/install.lock"
flock -w "${LOCALSTACK_INSTALL_TIMEOUT:-1200}" 8 || {
    echo "another localstack install held $DATA/install.lock too long" >&2
    exit 1
}
if installed; then
    echo "localstack $VERSION installed in $VENV meanwhile"
    exit 0
fi

is_new_enough() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null
}

find_python() {
    local candidate
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in "${LOCALSTACK_PYTHON:-}" python3.13 python3.12 \
        "$pyenv_root"/versions/3.13*/bin/python3 "$pyenv_root"/versions/3.12*/bin/python3; do
        [[ -n "$candidate" ]] || continue
        candidate="$(command -v "$candidate" 2>/dev/null)" || continue
        if is_new_enough "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! PYTHON="$(find_python)"; then
    echo "localstack $VERSION needs Python >= 3.12; none found (set LOCALSTACK_PYTHON)" >&2
    exit 1
fi

echo "installing localstack $VERSION into $VENV with $PYTHON (about a minute the first time)"
if [[ -x "$VENV/bin/python" ]] && ! is_new_enough "$VENV/bin/python"; then
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! {
    "$VENV/bin/python" -m pip install --upgrade pip &&
        "$VENV/bin/python" -m pip install \
            "localstack-core[runtime]==$VERSION" \
            "cbor2<6" \
            "pyopenssl>=25,<26" \
            "cryptography>=45.0.7,<47" \
            "service_identity"
} >"$LOG" 2>&1; then
    echo "pip failed; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
fi
touch "$STAMP"
echo "localstack $VERSION installed in $VENV"
