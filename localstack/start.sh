#!/usr/bin/env bash
# Run LocalStack as a host process (no Docker) on 127.0.0.1:4566 and wait until it is healthy.
# A no-op when it is already running. Its log lives under localstack/.data/; its pid file in the
# machine-wide $RUN_DIR (env.sh), since every checkout and test session shares the one LocalStack.
# Starts are serialised by a machine-wide lock: sessions that start LocalStack at the same time
# (a fresh machine's first test runs) get one LocalStack, never two racing for the port.
# LOCALSTACK_STARTED_BY (default "hand") is recorded for the tests' fixture, which stops only a
# LocalStack that tests started.
set -euo pipefail

# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
TIMEOUT="${LOCALSTACK_START_TIMEOUT:-120}"

healthy() {
    "$VENV/bin/python" - "$ENDPOINT/_localstack/health" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    services = json.load(response).get("services", {})
wanted = ("ec2", "s3", "ssm", "sts", "iam")
sys.exit(0 if all(services.get(name) in ("available", "running") for name in wanted) else 1)
PY
}

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "localstack is not installed: run $LOCALSTACK_DIR/install.sh first" >&2
    exit 1
fi

# Held until this script exits; whoever waited here finds the LocalStack the holder started.
take_setup_lock "$((TIMEOUT + 60))"

pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if is_localstack "$pid"; then
    if healthy; then
        echo "localstack already running (pid $pid) at $ENDPOINT"
        exit 0
    fi
    echo "localstack (pid $pid) is running but not healthy yet; waiting"
elif healthy; then
    echo "something else already serves a healthy LocalStack at $ENDPOINT; using it"
    exit 0
else
    mkdir -p "$DATA"
    echo "starting localstack at $ENDPOINT (log: $LOG_FILE)"
    # setsid: its own process group, so stop.sh can end LocalStack and its helpers together.
    # 9>&-: LocalStack must not inherit (and so hold forever) the setup lock.
    GATEWAY_LISTEN=127.0.0.1:4566 \
    SERVICES=ec2,s3,ssm,sts,iam \
    DNS_ADDRESS=0 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    DISABLE_EVENTS=1 \
    LOCALSTACK_TELEMETRY_DISABLED=1 \
    EAGER_SERVICE_LOADING=1 \
    FILESYSTEM_ROOT="$DATA/filesystem" \
        setsid "$VENV/bin/python" -m localstack.runtime.main </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "${LOCALSTACK_STARTED_BY:-hand}" >"$STARTED_BY_FILE"
fi

started=$SECONDS
until healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "localstack exited during start; last lines of $LOG_FILE:" >&2
        tail -n 40 "$LOG_FILE" >&2
        rm -f "$PID_FILE" "$STARTED_BY_FILE"
        exit 1
    fi
    waited=$((SECONDS - started))
    if ((waited >= TIMEOUT)); then
        echo "localstack not healthy after ${TIMEOUT}s; last lines of $LOG_FILE:" >&2
        tail -n 40 "$LOG_FILE" >&2
        exit 1
    fi
    if ((waited > 0 && waited % 5 == 0)); then
        echo "  waiting for localstack health (${waited}s)"
    fi
    sleep 1
done
echo "localstack ready at $ENDPOINT (pid $pid, $((SECONDS - started))s)"
