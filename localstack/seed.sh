#!/usr/bin/env bash
# Seed the running LocalStack (launch template, model bucket with the bundled model).
# Runs seed.py with the project's virtual environment, which has boto3. Seeds of the shared
# LocalStack are serialised by the machine-wide setup lock, so sessions seeding a fresh
# LocalStack at once never race to create the same things.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
PYTHON="${PADDLER_PYTHON:-$HERE/../.venv/bin/python}"

take_setup_lock "${LOCALSTACK_SEED_TIMEOUT:-240}"
exec "$PYTHON" "$HERE/seed.py" "$@" # keeps the lock (fd 9) until seed.py exits
