# Sourced by soak.sh and compare.sh: a control plane and a data plane as
# separate processes on loopback, with fresh state, for the load generator.
#
# The sourcing script sets BIN_DIR (where openspeak-control is; empty:
# built with cargo into target/release by use_release_build) and OUT_DIR
# (empty: a new directory), then calls:
#
#   use_release_build        builds the release binaries if BIN_DIR is empty
#   use_out_dir NAME         OUT_DIR, made (/tmp/openspeak-NAME.* if empty)
#   use_ports P M            ports of their own, so that a run goes on beside
#                            a default server: control P51, internal link
#                            P61, QUIC voice P52, UDP voice P53, metrics M00
#                            (control) and M01 (data plane, whose /readyz
#                            is how readiness is seen); `use_ports 504 191`
#                            gives 50451, 50461, 50452, 50453, 19100, 19101
#   start_planes DIR DP      starts both, DP being the openspeak-dataplane
#                            binary; state and logs under DIR; sets TOKEN
#                            (the bootstrap admin token) and DATAPLANE_PID
#   wait_ready SECONDS       until the data plane answers /readyz with 200
#                            (attached, membership loaded); 1 if it did not
#   stop_planes              SIGTERM both and wait for them

PLANE_PIDS=()

use_release_build() {
    if [ -z "$BIN_DIR" ]; then
        cargo build --release --bins
        BIN_DIR=target/release
    fi
}

use_out_dir() {
    OUT_DIR="${OUT_DIR:-$(mktemp -d "/tmp/openspeak-$1.XXXXXX")}"
    mkdir -p "$OUT_DIR"
}

use_ports() {
    CONTROL="127.0.0.1:${1}51"
    CLUSTER="127.0.0.1:${1}61"
    QUIC_PORT="${1}52"
    UDP_PORT="${1}53"
    CONTROL_METRICS="127.0.0.1:${2}00"
    DATAPLANE_METRICS="127.0.0.1:${2}01"
}

random_secret() {
    echo "$1-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
}

start_planes() {
    local dir="$1" dataplane="$2" secret
    TOKEN=$(random_secret token)
    secret=$(random_secret cluster)
    OPENSPEAK_STORAGE__DATA_DIR="$dir/control-data" \
    OPENSPEAK_SERVER__HOST=127.0.0.1 OPENSPEAK_SERVER__PORT="${CONTROL#*:}" \
    OPENSPEAK_CLUSTER__LISTEN="$CLUSTER" OPENSPEAK_CLUSTER__SECRET="$secret" \
    OPENSPEAK_METRICS__LISTEN="$CONTROL_METRICS" \
    OPENSPEAK_AUTH__BOOTSTRAP_TOKEN="$TOKEN" \
        "$BIN_DIR/openspeak-control" >"$dir/control.log" 2>&1 &
    PLANE_PIDS+=("$!")
    OPENSPEAK_STORAGE__DATA_DIR="$dir/dataplane-data" \
    OPENSPEAK_DATAPLANE__HOST=127.0.0.1 OPENSPEAK_DATAPLANE__QUIC_PORT="$QUIC_PORT" \
    OPENSPEAK_DATAPLANE__UDP_PORT="$UDP_PORT" \
    OPENSPEAK_DATAPLANE__METRICS_LISTEN="$DATAPLANE_METRICS" \
    OPENSPEAK_CLUSTER__CONTROL_ADDR="http://$CLUSTER" OPENSPEAK_CLUSTER__SECRET="$secret" \
        "$dataplane" >"$dir/dataplane.log" 2>&1 &
    DATAPLANE_PID=$!
    PLANE_PIDS+=("$DATAPLANE_PID")
}

# Whether /readyz answers 200 now.
readyz_ok() {
    local ok=1
    if exec 3<>"/dev/tcp/${DATAPLANE_METRICS%:*}/${DATAPLANE_METRICS#*:}"; then
        printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
        if head -n1 <&3 | grep -q ' 200 '; then ok=0; fi
        exec 3<&-
    fi
    return $ok
}

wait_ready() {
    local tries=$(($1 * 5))
    for _ in $(seq 1 "$tries"); do
        if readyz_ok 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

stop_planes() {
    for pid in "${PLANE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PLANE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PLANE_PIDS=()
}
