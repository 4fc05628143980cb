# Paths and addresses shared by the scripts in localstack/ (sourced, not run).
LOCALSTACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LOCALSTACK_VENV:-$LOCALSTACK_DIR/.venv}"
DATA="${LOCALSTACK_DATA:-$LOCALSTACK_DIR/.data}"
PID_FILE="$DATA/localstack.pid"
LOG_FILE="$DATA/localstack.log"
ENDPOINT="http://127.0.0.1:4566"
