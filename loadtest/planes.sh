# Sourced by soak.sh and compare.sh: a control plane and a data plane as
# separate processes on loopback, with fresh state, for the load generator.
#
# The sourcing script sets, before calling these:
#   BIN_DIR            where openspeak-control is ("" : built with cargo
#                      into target/release, see use_release_build)
#   CONTROL, CLUSTER   the control plane's public and internal addresses
#   CONTROL_METRICS    its metrics address (127.0.0.1:0 for any port)
#   DATAPLANE_METRICS  the data plane's metrics address (a fixed port: its
#                      /readyz is how readiness is seen)
#   QUIC_PORT, UDP_PORT  the data plane's voice ports
#
#   use_release_build        builds the release binaries if BIN_DIR is empty
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
