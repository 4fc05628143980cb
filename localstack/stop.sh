#!/usr/bin/env bash
# Stop the LocalStack started by start.sh (SIGTERM to its process group, SIGKILL after a grace).
set -euo pipefail

# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
GRACE="${LOCALSTACK_STOP_GRACE:-20}"

take_setup_lock "${LOCALSTACK_START_TIMEOUT:-120}"

if [[ ! -f "$PID_FILE" ]]; then
    echo "localstack is not running (no $PID_FILE)"
    rm -f "$STARTED_BY_FILE"
    exit 0
fi
pid="$(cat "$PID_FILE")"
if ! is_localstack "$pid"; then
    echo "localstack (pid $pid) already stopped"
    rm -f "$PID_FILE" "$STARTED_BY_FILE"
    exit 0
fi
echo "stopping localstack (pid $pid)"
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
for ((i = 0; i < GRACE * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "localstack did not stop within ${GRACE}s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
fi
rm -f "$PID_FILE" "$STARTED_BY_FILE"
echo "localstack stopped"
