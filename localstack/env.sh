# Paths and addresses shared by the scripts in localstack/ (sourced, not run).
LOCALSTACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LOCALSTACK_VENV:-$LOCALSTACK_DIR/.venv}"
DATA="${LOCALSTACK_DATA:-$LOCALSTACK_DIR/.data}"
LOG_FILE="$DATA/localstack.log"
ENDPOINT="http://127.0.0.1:4566"

# There is one LocalStack per machine (it owns port 4566), shared by every checkout and every
# test session on it, so what describes the running one lives in one machine-wide directory:
#   localstack.pid  its process (group) id, written by start.sh
#   started-by      who launched it: "tests" (the pytest fixture) or "hand"
#   setup.lock      flock held by start.sh, seed.sh and stop.sh: one of them at a time
#   users.lock      flock each test session holds (shared) while it uses LocalStack
RUN_DIR="${LOCALSTACK_RUN_DIR:-${TMPDIR:-/tmp}/paddler-localstack-4566}"
PID_FILE="$RUN_DIR/localstack.pid"
STARTED_BY_FILE="$RUN_DIR/started-by"
SETUP_LOCK="$RUN_DIR/setup.lock"
USERS_LOCK="$RUN_DIR/users.lock"

# Take the machine-wide setup lock on file descriptor 9 for the rest of the calling script
# (waiting at most $1 seconds). Children that outlive the script must close it (9>&-).
take_setup_lock() {
    mkdir -p "$RUN_DIR"
    exec 9>"$SETUP_LOCK"
    if ! flock -w "$1" 9; then
        echo "another localstack start, seed or stop held $SETUP_LOCK for over $1s" >&2
        exit 1
    fi
}

# Whether $1 is the pid of a running LocalStack (not just any process that reused the pid).
is_localstack() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
    [[ -r "/proc/$1/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "localstack.runtime.main"
}
