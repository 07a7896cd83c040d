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
. loadtest/planes.sh
use_release_build
use_out_dir soak
use_ports 504 191
trap stop_planes EXIT
start_planes "$OUT_DIR" "$BIN_DIR/openspeak-dataplane"
if ! wait_ready 60; then
    echo "soak: the data plane was not ready after 60 s; see $OUT_DIR/*.log" >&2
    exit 1
fi

echo "soak: planes up (logs in $OUT_DIR); running the load generator" >&2
"$BIN_DIR/openspeak-loadtest" voice --addr "$CONTROL" --token "$TOKEN" \
    --scenario soak --metrics "$DATAPLANE_METRICS" --control-metrics "$CONTROL_METRICS" \
    --strict --json "$OUT_DIR/soak.json" "$@"
