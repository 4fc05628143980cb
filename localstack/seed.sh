#!/usr/bin/env bash
# Seed the running LocalStack (launch template, model bucket with the bundled model).
# Runs seed.py with the project's virtual environment, which has boto3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PADDLER_PYTHON:-$HERE/../.venv/bin/python}"
exec "$PYTHON" "$HERE/seed.py" "$@"
