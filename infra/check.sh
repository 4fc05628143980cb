#!/usr/bin/env bash
# Static checks of infra/ that need no AWS account and no Terraform providers:
# checkov (from its own virtual environment, never the project's) and, where terraform is
# installed, `terraform fmt -check`. tests/test_infra.py holds the Terraform and the code together.
set -euo pipefail

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CHECKOV_VENV:-${TMPDIR:-/tmp}/paddler-checkov-venv}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"

if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    echo "installing checkov $CHECKOV_VERSION into $VENV"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1
    "$VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/checkov" --version >/dev/null
fi

echo "checkov $CHECKOV_VERSION on $INFRA"
"$VENV/bin/checkov" --directory "$INFRA" --framework terraform --skip-download --compact --quiet

if command -v terraform >/dev/null 2>&1; then
    echo "terraform fmt -check on $INFRA"
    TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff "$INFRA"
else
    echo "terraform not installed: fmt check skipped"
fi
