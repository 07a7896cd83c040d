#!/usr/bin/env bash
# The soak (RELIABILITY.md): a control plane and a data plane as separate
# processes on loopback, fresh state, and `openspeak-loadtest voice
# --scenario soak` against them (2,000 clients, 200 talking, listeners
# leaving and rejoining every ~3 s, 30 minutes, a timeline row a minute
# with each plane's memory and open descriptors), with --strict: the exit
# status is the verdict's.
#
# Usage: loadtest/soak.sh [--bin-dir DIR] [--out DIR] [-- extra loadtest flags]
#   --bin-dir DIR  where openspeak-control, -dataplane and -loadtest are
#                  (default: target/release, built first with cargo)
#   --out DIR      where the report (soak.json) and the planes' logs go
#                  (default: a new directory under /tmp)
# Extra flags after `--` go to the load generator, e.g. `-- --duration 60
# --timeline 10` for a one-minute run.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR=""
OUT_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; shift 2 ;;
        --out) OUT_DIR="${2:?--out needs a directory}"; shift 2 ;;
        --) shift; break ;;
        *) echo "soak.sh: unknown argument $1 (see the header)" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN_DIR" ]; then
    cargo build --release --bins
    BIN_DIR=target/release
fi
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/openspeak-soak.XXXXXX)}"
mkdir -p "$OUT_DIR"

# Ports of their own, so that a soak runs beside a default server.
CONTROL=127.0.0.1:50451
CLUSTER=127.0.0.1:50461
CONTROL_METRICS=127.0.0.1:19100
DATAPLANE_METRICS=127.0.0.1:19101
TOKEN="soak-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
SECRET="soak-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

OPENSPEAK_STORAGE__DATA_DIR="$OUT_DIR/control-data" \
OPENSPEAK_SERVER__HOST=127.0.0.1 OPENSPEAK_SERVER__PORT="${CONTROL#*:}" \
OPENSPEAK_CLUSTER__LISTEN="$CLUSTER" OPENSPEAK_CLUSTER__SECRET="$SECRET" \
OPENSPEAK_METRICS__LISTEN="$CONTROL_METRICS" \
OPENSPEAK_AUTH__BOOTSTRAP_TOKEN="$TOKEN" \
    "$BIN_DIR/openspeak-control" >"$OUT_DIR/control.log" 2>&1 &
pids+=("$!")

OPENSPEAK_STORAGE__DATA_DIR="$OUT_DIR/dataplane-data" \
OPENSPEAK_DATAPLANE__HOST=127.0.0.1 OPENSPEAK_DATAPLANE__QUIC_PORT=50452 \
OPENSPEAK_DATAPLANE__UDP_PORT=50453 OPENSPEAK_DATAPLANE__METRICS_LISTEN="$DATAPLANE_METRICS" \
OPENSPEAK_CLUSTER__CONTROL_ADDR="http://$CLUSTER" OPENSPEAK_CLUSTER__SECRET="$SECRET" \
    "$BIN_DIR/openspeak-dataplane" >"$OUT_DIR/dataplane.log" 2>&1 &
pids+=("$!")

# Ready when the data plane says it is (attached, membership loaded);
# a minute at most.
ready=0
for _ in $(seq 1 300); do
    if exec 3<>"/dev/tcp/${DATAPLANE_METRICS%:*}/${DATAPLANE_METRICS#*:}" 2>/dev/null; then
        printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
        if head -n1 <&3 | grep -q ' 200 '; then ready=1; fi
        exec 3<&-
    fi
    [ "$ready" = 1 ] && break
    sleep 0.2
done
if [ "$ready" != 1 ]; then
    echo "soak: the data plane was not ready after 60 s; see $OUT_DIR/*.log" >&2
    exit 1
fi

echo "soak: planes up (logs in $OUT_DIR); running the load generator" >&2
"$BIN_DIR/openspeak-loadtest" voice --addr "$CONTROL" --token "$TOKEN" \
    --scenario soak --metrics "$DATAPLANE_METRICS" --control-metrics "$CONTROL_METRICS" \
    --strict --json "$OUT_DIR/soak.json" "$@"
