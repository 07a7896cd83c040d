#!/usr/bin/env bash
# End-to-end check of the container deployment (what CI runs):
#
#   1. base image      deploy/base-image.sh (skipped when it exists)
#   2. binaries        cargo build --release --bins (or --bin-dir DIR)
#   3. image builds    deploy/build-images.sh --bin-dir ...
#   4. compose up      cluster-tls makes the internal link's certificates;
#                      control, dp1, dp2, prometheus all healthy, both
#                      data planes attached over mutual TLS
#   5. loadtest        the `loadtest` profile (fanout, 10 s, --strict):
#                      exit 0, and 0 lost, 0 wrong, 0 malformed in its JSON;
#                      Prometheus has scraped both data planes, and
#                      `promtool check metrics` passes on the control
#                      plane's and both data planes' /metrics; the admin
#                      commands work inside the control container
#   6. lose dp1        kill dp1: control and dp2 stay healthy; once the
#                      control plane has seen dp1 go, a short second load
#                      test puts voice through dp2
#   7. lose control    kill control: dp2 keeps running and healthy, its
#                      link "away" (it keeps routing what it carries)
#   and always, whatever failed: docker compose down -v (trap).
#
# Usage: deploy/test-compose.sh [--bin-dir DIR] [--keep-logs DIR]
#   --bin-dir DIR   take prebuilt binaries instead of running cargo
#   --keep-logs DIR write every service's log there before tearing down
#
# Each run uses its own compose project name, env file (fresh random
# secrets) and output directory, so runs do not collide. Exits non-zero on
# any failure, after printing a summary.
set -uo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY/.." && pwd)"
BIN_DIR=""
KEEP_LOGS=""

# Bounds on every wait, in seconds.
T_BUILD=1800     # cargo build (cold: ~10 min on 2 cores)
T_UP=240         # compose up until every service is healthy
T_ATTACH=90      # both data planes attached to the control plane
T_LOADTEST=300   # the load test run (10 s of voice, plus set-up and drain)
T_DETACH=90      # the control plane notices dp1 is gone (HTTP/2 keepalive: 30 s + 10 s)
T_STEADY=20      # how long survivors must stay healthy after a kill

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; shift ;;
        --keep-logs) KEEP_LOGS="${2:?--keep-logs needs a directory}"; shift ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test-compose: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# ---- reporting -------------------------------------------------------------

SUMMARY=()      # "STATUS|what|seconds|detail"
FAILED=0
CURRENT_STAGE=""
STAGE_START=0
T0=$(date +%s)
log() { printf '[test-compose %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
record() { SUMMARY+=("$1|$2|$3|$4"); [ "$1" = FAIL ] && FAILED=1; return 0; }

print_summary() {
    local total=$(( $(date +%s) - T0 ))
    echo
    echo "================ test-compose summary (project $PROJECT) ================"
    printf '%-5s  %-44s %7s  %s\n' "" "stage / check" "seconds" "detail"
    local line status what secs detail
    for line in "${SUMMARY[@]}"; do
        IFS='|' read -r status what secs detail <<<"$line"
        printf '%-5s  %-44s %7s  %s\n' "$status" "$what" "$secs" "$detail"
    done
    echo "-------------------------------------------------------------------------"
    if [ "$FAILED" = 0 ]; then
        echo "RESULT: PASS in ${total}s"
    else
        echo "RESULT: FAIL in ${total}s"
    fi
}

# ---- compose ---------------------------------------------------------------

if docker compose version >/dev/null 2>&1; then
    COMPOSE_CMD=(docker compose)
    COMPOSE_V2=1
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE_CMD=(docker-compose)
    COMPOSE_V2=0
else
    echo "test-compose: neither 'docker compose' nor 'docker-compose' is installed" \
         "(Debian: apt-get install -y docker-compose)" >&2
    exit 1
fi

PROJECT="openspeak-test-$(date +%Y%m%d%H%M%S)-$$"
RUN_DIR="$(mktemp -d /var/tmp/openspeak-compose-test.XXXXXX)"
ENV_FILE="$RUN_DIR/env"
OUT_DIR="$RUN_DIR/out"

compose() {
    "${COMPOSE_CMD[@]}" --project-name "$PROJECT" --env-file "$ENV_FILE" \
        --file "$DEPLOY/docker-compose.yml" "$@"
}

# The service's container, running or not (v2's ps lists running ones only
# unless -a).
cid() {
    if [ "$COMPOSE_V2" = 1 ]; then compose ps -a -q "$1" 2>/dev/null | head -n1
    else compose ps -q "$1" 2>/dev/null | head -n1; fi
}

# "running healthy", "exited ", ... for a service's container.
state() {
    local id; id="$(cid "$1")"
    [ -n "$id" ] || { echo "absent"; return; }
    docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null \
        || echo "absent"
}

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every 2 s until it
# succeeds; false (with a message) after SECONDS.
wait_until() {
    local limit="$1" what="$2"; shift 2
    local deadline=$(( $(date +%s) + limit ))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "TIMEOUT after ${limit}s waiting for: $what"
            return 1
        fi
        sleep 2
    done
}

healthy() { [ "$(state "$1")" = "running healthy" ]; }
all_healthy() { local s; for s in "$@"; do healthy "$s" || return 1; done; }
attached() { docker exec "$(cid "$1")" openspeak-healthcheck dataplane --attached; }
both_attached() { attached dp1 && attached dp2; }

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "${CURRENT_STAGE:-}" ]; then
        record FAIL "$CURRENT_STAGE" $(( $(date +%s) - STAGE_START )) "interrupted (exit status $rc)"
    fi
    if [ -n "${PROJECT:-}" ] && [ -f "$ENV_FILE" ]; then
        if [ "$FAILED" = 1 ] || [ -n "$KEEP_LOGS" ]; then
            local dir="${KEEP_LOGS:-$RUN_DIR/logs}"
            mkdir -p "$dir"
            for s in control dp1 dp2 prometheus loadtest; do
                compose logs --no-color "$s" >"$dir/$s.log" 2>&1 || true
            done
            if [ "$FAILED" = 1 ]; then
                for s in control dp1 dp2; do
                    echo "---- last lines of $s ----" >&2
                    tail -n 25 "$dir/$s.log" >&2 || true
                done
            fi
            log "service logs in $dir"
        fi
        log "tearing down: compose down -v"
        local start; start=$(date +%s)
        if timeout 180 "${COMPOSE_CMD[@]}" --project-name "$PROJECT" --env-file "$ENV_FILE" \
                --file "$DEPLOY/docker-compose.yml" --profile loadtest \
                down -v --remove-orphans --timeout 10 >"$RUN_DIR/down.log" 2>&1; then
            record ok "teardown (compose down -v)" $(( $(date +%s) - start )) "containers, networks, volumes removed"
        else
            record FAIL "teardown (compose down -v)" $(( $(date +%s) - start )) "see $RUN_DIR/down.log"
        fi
    fi
    print_summary
    if [ "$FAILED" = 0 ] && [ -z "$KEEP_LOGS" ]; then rm -rf "$RUN_DIR"; fi
    [ "$FAILED" = 0 ] && [ "$rc" = 0 ] && exit 0
    exit 1
}
trap teardown EXIT
trap 'log "interrupted"; FAILED=1; exit 130' INT TERM

# stage NAME COMMAND...: runs COMMAND, times it, records it; stops the test
# on failure.
stage() {
    local what="$1"; shift
    local start; start=$(date +%s)
    STAGE_DETAIL=""
    CURRENT_STAGE="$what"; STAGE_START=$start
    log "== $what"
    if "$@"; then
        record ok "$what" $(( $(date +%s) - start )) "${STAGE_DETAIL:-}"
    else
        record FAIL "$what" $(( $(date +%s) - start )) "${STAGE_DETAIL:-}"
        CURRENT_STAGE=""
        exit 1
    fi
    CURRENT_STAGE=""
}

# ---- stages ------------------------------------------------------------------

do_base() { "$DEPLOY/base-image.sh"; }

do_binaries() {
    if [ -n "$BIN_DIR" ]; then
        STAGE_DETAIL="prebuilt: $BIN_DIR"
        return 0
    fi
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
    STAGE_DETAIL="cargo build --release --bins -> $BIN_DIR"
    (cd "$ROOT" && timeout "$T_BUILD" cargo build --release --bins) \
        || { STAGE_DETAIL="cargo build failed or took over ${T_BUILD}s"; return 1; }
}

do_images() {
    "$DEPLOY/build-images.sh" --bin-dir "$BIN_DIR" \
        || { STAGE_DETAIL="deploy/build-images.sh failed"; return 1; }
    STAGE_DETAIL="openspeak:local, openspeak/prometheus:local"
}

do_up() {
    mkdir -p "$OUT_DIR"
    chmod 0777 "$OUT_DIR"     # the load generator runs as uid 10001
    local secret token
    secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    token="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    umask 077
    printf 'CLUSTER_SECRET=%s\nBOOTSTRAP_TOKEN=%s\nLOADTEST_OUT=%s\n' "$secret" "$token" "$OUT_DIR" >"$ENV_FILE"
    umask 022
    log "project $PROJECT, env file $ENV_FILE (fresh random secrets)"
    if [ "$COMPOSE_V2" = 1 ]; then
        compose up -d --wait --wait-timeout "$T_UP" \
            || { STAGE_DETAIL="compose up --wait failed"; return 1; }
    else
        # docker-compose v1 has no --wait: start, then poll the health checks.
        timeout "$T_UP" "${COMPOSE_CMD[@]}" --project-name "$PROJECT" --env-file "$ENV_FILE" \
            --file "$DEPLOY/docker-compose.yml" up -d \
            || { STAGE_DETAIL="compose up -d failed"; return 1; }
        wait_until "$T_UP" "control, dp1, dp2, prometheus healthy" all_healthy control dp1 dp2 prometheus \
            || { STAGE_DETAIL="not healthy after ${T_UP}s: control=$(state control) dp1=$(state dp1) dp2=$(state dp2) prometheus=$(state prometheus)"; return 1; }
    fi
    wait_until "$T_ATTACH" "dp1 and dp2 attached to the control plane" both_attached \
        || { STAGE_DETAIL="data planes not attached: dp1: $(attached dp1 2>&1) / dp2: $(attached dp2 2>&1)"; return 1; }
    # The link is mutual TLS (the cluster-tls service's certificates), and
    # each plane holds its own certificate, key and the authority's
    # certificate: never the authority's key.
    docker logs "$(cid control)" 2>&1 | grep 'internal link' | grep -q 'mutual TLS' \
        || { STAGE_DETAIL="the control plane does not report mutual TLS on the internal link"; return 1; }
    local s files
    for s in control dp1 dp2; do
        files="$(docker exec "$(cid "$s")" ls /etc/openspeak/cluster-tls 2>&1 | tr '\n' ' ')"
        [ "$files" = "ca.pem cert.pem key.pem " ] \
            || { STAGE_DETAIL="$s's link certificates: $files"; return 1; }
    done
    STAGE_DETAIL="all healthy, dp1 and dp2 attached over mutual TLS"
}

# check_report FILE: the JSON must show a clean run.
check_report() {
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def get(*names):
    for n in names:
        if n in r:
            return r[n]
    return None
lost, wrong, mal = get("lost"), get("wrong"), get("malformed")
expected, delivered = get("expected"), get("delivered")
connected, setup_failures = get("voice_connected"), get("setup_failures")
errors = get("errors")
print(f"expected={expected} delivered={delivered} lost={lost} wrong={wrong} "
      f"malformed={mal} voice_connected={connected} setup_failures={setup_failures} "
      f"errors={errors} p99_us={(get('latency_us') or {}).get('p99')}")
ok = (lost == 0 and wrong == 0 and mal == 0 and isinstance(expected, int) and expected > 0
      and delivered == expected and not setup_failures)
sys.exit(0 if ok else 1)
PY
}

run_loadtest() { # json-name extra-args...
    local name="$1"; shift
    timeout "$T_LOADTEST" "${COMPOSE_CMD[@]}" --project-name "$PROJECT" --env-file "$ENV_FILE" \
        --file "$DEPLOY/docker-compose.yml" --profile loadtest \
        run --rm -T "$@" >"$RUN_DIR/$name.log" 2>&1
}

do_loadtest() {
    local rc=0
    run_loadtest loadtest loadtest || rc=$?
    tail -n 15 "$RUN_DIR/loadtest.log" >&2
    if [ "$rc" != 0 ]; then
        STAGE_DETAIL="openspeak-loadtest exited $rc (124 = over ${T_LOADTEST}s)"
        return 1
    fi
    [ -s "$OUT_DIR/fanout.json" ] || { STAGE_DETAIL="no $OUT_DIR/fanout.json"; return 1; }
    STAGE_DETAIL="$(check_report "$OUT_DIR/fanout.json")" || return 1
}

# Prometheus scraped both data planes (its own API, asked from inside it).
prometheus_targets_up() {
    docker exec "$(cid prometheus)" bash -c '
        exec 3<>/dev/tcp/127.0.0.1/9090
        printf "GET /api/v1/query?query=up%%7Bjob%%3D%%22openspeak-dataplane%%22%%7D HTTP/1.0\r\n\r\n" >&3
        cat <&3' | grep -o '"dataplane":"dp[12]"[^]]*"1"\]' | grep -c dp | grep -qx 2
}
do_prometheus() {
    wait_until 60 "Prometheus to scrape dp1 and dp2" prometheus_targets_up \
        || { STAGE_DETAIL="up{job=openspeak-dataplane} not 1 for both data planes"; return 1; }
    STAGE_DETAIL="up{job=openspeak-dataplane} = 1 for dp1 and dp2"
}

# Each process's /metrics passes `promtool check metrics` (the Prometheus
# image has Debian's promtool): fetched and checked from inside the
# Prometheus container, which is on the private network they serve on.
do_promtool() {
    local target out
    for target in control-internal:9100 dp1-internal:9101 dp2-internal:9101; do
        out="$(docker exec -i "$(cid prometheus)" bash -c '
            exec 3<>"/dev/tcp/${1%:*}/${1#*:}" || exit 1
            printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
            body="$(sed "1,/^\r\{0,1\}$/d" <&3)"
            [ -n "$body" ] || { echo "empty /metrics"; exit 1; }
            printf "%s\n" "$body" | promtool check metrics 2>&1' _ "$target")" \
            || { STAGE_DETAIL="$target: ${out:-promtool failed}"; return 1; }
    done
    STAGE_DETAIL="promtool check metrics clean for control, dp1 and dp2"
}

# The admin commands inside the control plane's container, as
# deploy/README.md tells an operator to run them: the running server holds
# its data directory's lock, so `status` goes through its API, and a ban
# made there is listed back.
do_admin() {
    local c out
    c="$(cid control)"
    out="$(docker exec "$c" openspeak-control status --json 2>&1)" \
        || { STAGE_DETAIL="status: ${out:0:200}"; return 1; }
    printf '%s' "$out" | grep -q '"running": true' \
        || { STAGE_DETAIL="status does not say running: ${out:0:200}"; return 1; }
    printf '%s' "$out" | grep -q '"dataplanes": \[$' \
        || { STAGE_DETAIL="status lists no data plane: ${out:0:200}"; return 1; }
    out="$(docker exec "$c" openspeak-control ban add 192.0.2.77 --duration 60 2>&1)" \
        || { STAGE_DETAIL="ban add: ${out:0:200}"; return 1; }
    out="$(docker exec "$c" openspeak-control ban list 2>&1)" \
        && printf '%s' "$out" | grep -q '192.0.2.77' \
        || { STAGE_DETAIL="ban list: ${out:0:200}"; return 1; }
    docker exec "$c" openspeak-control ban remove 192.0.2.77 >/dev/null 2>&1 \
        || { STAGE_DETAIL="ban remove failed"; return 1; }
    STAGE_DETAIL="status through the API (running, data planes listed); ban add, list, remove"
}

# steady SECONDS SERVICE...: each must stay running and healthy that long.
steady() {
    local limit="$1"; shift
    local end=$(( $(date +%s) + limit )) s
    while [ "$(date +%s)" -lt "$end" ]; do
        for s in "$@"; do
            healthy "$s" || { log "$s is $(state "$s")"; return 1; }
        done
        sleep 2
    done
}

do_kill_dp1() {
    compose kill dp1 >/dev/null 2>&1 || { STAGE_DETAIL="compose kill dp1 failed"; return 1; }
    local st; st="$(state dp1)"
    case "$st" in running*) STAGE_DETAIL="dp1 still running after kill ($st)"; return 1 ;; esac
    steady "$T_STEADY" control dp2 \
        || { STAGE_DETAIL="after dp1 died: control=$(state control) dp2=$(state dp2)"; return 1; }
    docker exec "$(cid control)" openspeak-healthcheck control >/dev/null \
        || { STAGE_DETAIL="control's gRPC health is not SERVING"; return 1; }
    attached dp2 >/dev/null || { STAGE_DETAIL="dp2 lost its link: $(attached dp2)"; return 1; }
    STAGE_DETAIL="dp1 $st; control and dp2 healthy for ${T_STEADY}s, dp2 still attached"
}

detached_dp1() { compose logs --no-color control 2>/dev/null | grep 'data plane detached' | grep -q 'dp1'; }
do_voice_via_dp2() {
    wait_until "$T_DETACH" "the control plane to notice dp1 is gone (log: data plane detached)" detached_dp1 \
        || { STAGE_DETAIL="control never logged dp1 detached within ${T_DETACH}s"; return 1; }
    local rc=0
    run_loadtest loadtest-dp2 --no-deps loadtest voice --scenario fanout --duration 3 \
        --addr control:50051 --token "$(grep ^BOOTSTRAP_TOKEN= "$ENV_FILE" | cut -d= -f2)" \
        --strict --quiet --json /out/fanout-dp2.json || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 15 "$RUN_DIR/loadtest-dp2.log" >&2
        STAGE_DETAIL="openspeak-loadtest exited $rc"
        return 1
    fi
    STAGE_DETAIL="$(check_report "$OUT_DIR/fanout-dp2.json")" || return 1
}

do_kill_control() {
    compose kill control >/dev/null 2>&1 || { STAGE_DETAIL="compose kill control failed"; return 1; }
    local st; st="$(state control)"
    case "$st" in running*) STAGE_DETAIL="control still running after kill ($st)"; return 1 ;; esac
    steady "$T_STEADY" dp2 \
        || { STAGE_DETAIL="dp2 after control died: $(state dp2)"; return 1; }
    local body
    body="$(docker exec "$(cid dp2)" openspeak-healthcheck dataplane)" \
        || { STAGE_DETAIL="dp2 /healthz: $body"; return 1; }
    STAGE_DETAIL="control $st; dp2 running and healthy for ${T_STEADY}s (${body#healthy: data plane /healthz: })"
}

log "compose: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || "${COMPOSE_CMD[@]}" version | head -n1))"
stage "base image (debootstrap + docker import)" do_base
stage "release binaries" do_binaries
stage "image builds (openspeak, prometheus)" do_images
stage "compose up (healthy, attached)" do_up
stage "loadtest fanout 10 s (--strict, 0 loss)" do_loadtest
stage "prometheus scrapes dp1 and dp2" do_prometheus
stage "promtool check metrics (control, dp1, dp2)" do_promtool
stage "admin commands in the control container" do_admin
stage "kill dp1: control and dp2 stay healthy" do_kill_dp1
stage "voice through dp2 after losing dp1" do_voice_via_dp2
stage "kill control: dp2 keeps running" do_kill_control
exit 0
