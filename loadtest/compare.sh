#!/usr/bin/env bash
# Side-by-side voice benchmark (BENCHMARKS.md): the same load against
# several data-plane builds, alternating build by build within each round so
# that a noisy host weighs on all of them alike, with the kernel's floor for
# the same fan-out measured in every round to quote ratios against: with
# listeners asleep on their sockets as the load generator's clients are
# (the floor), and with listeners that poll (the floor of earlier figures,
# which leaves the wake-ups out; BENCHMARKS.md).
#
# Usage: loadtest/compare.sh [options] NAME=DATAPLANE_BINARY...
#   --bin-dir DIR      where openspeak-control and openspeak-loadtest are
#                      (default: target/release, built first with cargo)
#   --out DIR          where each run's JSON report and logs go
#                      (default: a new directory under /tmp)
#   --rounds N         rounds of every build (default 3)
#   --duration S       seconds of voice per run (default 15)
#   --transport T      quic or udp (default quic)
#   --scenario S       the load generator's preset (default fanout)
#   --no-floor         skip `openspeak-loadtest floor` in each round
# Each NAME=BINARY is one build of openspeak-dataplane under a short name.
# Flags after `--` go to `openspeak-loadtest voice`, e.g. `-- --clients 600
# --channels 12 --speakers 5` for a heavier fan-out than the preset's.
# Prints one line per run, then the medians; needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR=""
OUT_DIR=""
ROUNDS=3
DURATION=15
TRANSPORT=quic
SCENARIO=fanout
FLOOR=1
builds=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; shift 2 ;;
        --out) OUT_DIR="${2:?--out needs a directory}"; shift 2 ;;
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
        --duration) DURATION="${2:?--duration needs seconds}"; shift 2 ;;
        --transport) TRANSPORT="${2:?--transport needs quic or udp}"; shift 2 ;;
        --scenario) SCENARIO="${2:?--scenario needs a preset}"; shift 2 ;;
        --no-floor) FLOOR=0; shift ;;
        --) shift; break ;;
        *=*) builds+=("$1"); shift ;;
        *) echo "compare.sh: unknown argument $1 (see the header)" >&2; exit 2 ;;
    esac
done
extra=("$@")
if [ ${#builds[@]} -eq 0 ]; then
    echo "compare.sh: name at least one build, e.g. base=target/release/openspeak-dataplane" >&2
    exit 2
fi
for build in "${builds[@]}"; do
    if [ ! -x "${build#*=}" ]; then
        echo "compare.sh: ${build#*=} (build ${build%%=*}) is not an executable" >&2
        exit 2
    fi
done
. loadtest/planes.sh
use_release_build
use_out_dir compare
use_ports 505 192
trap stop_planes EXIT

# One run: fresh planes with the data plane `$2`, the load, a JSON report.
run() {
    local name="$1" dataplane="$2" json="$3" dir
    dir=$(mktemp -d "$OUT_DIR/run.XXXXXX")
    start_planes "$dir" "$dataplane"
    if ! wait_ready 30; then
        echo "compare.sh: build $name was not ready after 30 s; see $dir" >&2
        exit 1
    fi
    "$BIN_DIR/openspeak-loadtest" voice --addr "$CONTROL" --token "$TOKEN" \
        --scenario "$SCENARIO" --duration "$DURATION" --transport "$TRANSPORT" \
        --server-pid "$DATAPLANE_PID" --metrics "$DATAPLANE_METRICS" --json "$json" \
        "${extra[@]}" >"$dir/loadtest.txt" 2>&1 || {
        echo "compare.sh: the load generator failed against $name; see $dir" >&2
        exit 1
    }
    stop_planes
}

for round in $(seq 1 "$ROUNDS"); do
    if [ "$FLOOR" = 1 ]; then
        # The fan-out preset's shape: 250 speaker packets/s to 49 listeners.
        for readers in waiting polling; do
            "$BIN_DIR/openspeak-loadtest" floor --listeners 49 --rate 250 \
                --readers "$readers" --duration "$DURATION" \
                --json "$OUT_DIR/floor-$readers-$round.json" \
                >"$OUT_DIR/floor-$readers-$round.txt" 2>&1
        done
    fi
    for build in "${builds[@]}"; do
        name="${build%%=*}"
        run "$name" "${build#*=}" "$OUT_DIR/$name-$round.json"
        echo "round $round: $name done" >&2
    done
done

python3 - "$OUT_DIR" "$ROUNDS" "${builds[@]%%=*}" <<'EOF'
import json, os, statistics, sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(path):
    with open(path) as f:
        return json.load(f)
def floors_of(readers):
    found = {}
    for r in range(1, rounds + 1):
        path = os.path.join(out, f"floor-{readers}-{r}.json")
        if os.path.exists(path):
            found[r] = load(path).get("cpu_us_per_packet")
    return found
floors, polled = floors_of("waiting"), floors_of("polling")
def ratio(cpu, floor):
    return cpu / floor if cpu and floor else None
print(f"{'build':<12} {'round':>5} {'cpu µs/pkt':>10} {'/ floor':>8} {'/ polled':>8} {'lost':>8} {'p99 ms':>8}")
medians = {}
for name in names:
    cpus, ratios, ratios_polled = [], [], []
    for r in range(1, rounds + 1):
        rep = load(os.path.join(out, f"{name}-{r}.json"))
        cpu = rep.get("cpu_us_per_forwarded_packet")
        a, b = ratio(cpu, floors.get(r)), ratio(cpu, polled.get(r))
        p99 = rep["latency_us"]["p99"] / 1000
        print(f"{name:<12} {r:>5} {cpu or 0:>10.2f} {a or 0:>8.2f} {b or 0:>8.2f} {rep['lost']:>8} {p99:>8.2f}")
        cpus += [cpu] if cpu else []
        ratios += [a] if a else []
        ratios_polled += [b] if b else []
    med = lambda xs: statistics.median(xs) if xs else None
    medians[name] = (med(cpus), med(ratios), med(ratios_polled))
for label, found in (("floor", floors), ("polled floor", polled)):
    if found:
        print(f"{label} µs/pkt by round: " + ", ".join(f"{r}: {v:.2f}" for r, v in sorted(found.items()) if v))
base = names[0]
for name, (cpu, a, b) in medians.items():
    rel = f", {cpu / medians[base][0]:.2f}× {base}" if cpu and medians[base][0] else ""
    fl = f", {a:.2f}× the floor" if a else ""
    fp = f" ({b:.2f}× the polled floor)" if b else ""
    print(f"median {name}: {cpu:.2f} µs per forwarded packet{fl}{fp}{rel}")
EOF
echo "reports in $OUT_DIR" >&2
