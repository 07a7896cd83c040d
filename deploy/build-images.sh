#!/usr/bin/env bash
# Builds the OpenSpeak images from binaries built on this host:
#
#   openspeak:local               every binary (deploy/Dockerfile)
#   openspeak/prometheus:local    Prometheus from Debian's package (deploy/prometheus)
#
# and, if missing, the base image they start FROM (deploy/base-image.sh).
#
# Usage: deploy/build-images.sh [--bin-dir DIR] [--tag TAG] [--no-prometheus]
#
#   --bin-dir DIR     take the binaries from DIR instead of building them
#                     (DIR must hold openspeak-control, openspeak-dataplane,
#                     openspeak-server and openspeak-loadtest)
#   --tag TAG         tag of the OpenSpeak image (default openspeak:local)
#   --prometheus-tag  tag of the Prometheus image (default openspeak/prometheus:local)
#   --no-prometheus   do not build the Prometheus image
#   --no-strip        keep the debug info in the image's binaries
#
# Without --bin-dir it runs `cargo build --release --bins` in the workspace
# (CARGO_TARGET_DIR is honoured) and takes target/release. No Rust toolchain
# is needed inside Docker: the binaries are copied in (see deploy/Dockerfile).
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY/.." && pwd)"
BIN_DIR=""
TAG="openspeak:local"
PROM_TAG="openspeak/prometheus:local"
BASE_TAG="openspeak/debian-base:bookworm"
PROMETHEUS=1
STRIP=1
BINS=(openspeak-control openspeak-dataplane openspeak-server openspeak-loadtest)

say() { printf 'build-images: %s\n' "$*" >&2; }
die() { printf 'build-images: ERROR: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; shift ;;
        --tag) TAG="${2:?--tag needs a value}"; shift ;;
        --prometheus-tag) PROM_TAG="${2:?--prometheus-tag needs a value}"; shift ;;
        --no-prometheus) PROMETHEUS=0 ;;
        --no-strip) STRIP=0 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running?)"

if [ -z "$BIN_DIR" ]; then
    command -v cargo >/dev/null 2>&1 \
        || die "cargo not found: install the Rust toolchain, or pass --bin-dir with prebuilt binaries"
    say "building the release binaries: cargo build --release --bins (cold: about 10 min on 2 cores)"
    start=$(date +%s)
    (cd "$ROOT" && cargo build --release --bins)
    say "binaries built in $(( $(date +%s) - start ))s"
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
BIN_DIR="$(cd "$BIN_DIR" && pwd)" || die "no such directory: $BIN_DIR"

for bin in "${BINS[@]}"; do
    [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin is missing (build with: cargo build --release --bins)"
done

# The base image has glibc and little else; refuse binaries that would need
# more (a -sys crate linking OpenSSL, say), with the library named.
say "checking what the binaries link against (ldd)"
for bin in "${BINS[@]}"; do
    extra="$(ldd "$BIN_DIR/$bin" 2>&1 | awk '{print $1}' \
        | grep -Ev '^(linux-vdso\.so|/lib64/ld-linux|/lib/ld-linux|ld-linux|libc\.so|libm\.so|libgcc_s\.so|libdl\.so|libpthread\.so|librt\.so)' || true)"
    if [ -n "$extra" ]; then
        die "$bin links against libraries the base image does not have: $(echo $extra)
add their Debian packages to deploy/Dockerfile (apt-get install) or link them statically"
    fi
done
say "ok: only glibc (libc, libm, libgcc_s, ld-linux)"

"$DEPLOY/base-image.sh" --tag "$BASE_TAG"

CONTEXT="$(mktemp -d /var/tmp/openspeak-image.XXXXXX)"
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/bin"
for bin in "${BINS[@]}"; do
    cp "$BIN_DIR/$bin" "$CONTEXT/bin/"
done
# The release profile keeps debug info (for profiling); the image does not
# need it, and it is most of each binary's size.
if [ "$STRIP" = 1 ] && command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$CONTEXT/bin/"openspeak-*
elif [ "$STRIP" = 1 ]; then
    say "note: no strip(1) on this host (Debian: binutils); the binaries keep their debug info"
fi
cp "$DEPLOY/openspeak-healthcheck" "$CONTEXT/bin/"
chmod 0755 "$CONTEXT/bin/"*
cp "$DEPLOY/Dockerfile" "$CONTEXT/Dockerfile"
say "staged $(du -sh "$CONTEXT/bin" | cut -f1) of binaries in $CONTEXT"

start=$(date +%s)
say "docker build -t $TAG (FROM $BASE_TAG)"
docker build --quiet --build-arg "BASE_IMAGE=$BASE_TAG" -t "$TAG" "$CONTEXT" >/dev/null
say "built $TAG in $(( $(date +%s) - start ))s"

# Every binary must start in the image (a missing library shows here).
for bin in "${BINS[@]}"; do
    version="$(docker run --rm --network none --entrypoint "$bin" "$TAG" --version 2>&1)" \
        || die "$bin does not start in $TAG: $version"
    say "  $version"
done

if [ "$PROMETHEUS" = 1 ]; then
    start=$(date +%s)
    say "docker build -t $PROM_TAG (Debian's prometheus package; needs deb.debian.org)"
    docker build --quiet --build-arg "BASE_IMAGE=$BASE_TAG" -t "$PROM_TAG" "$DEPLOY/prometheus" >/dev/null \
        || die "building $PROM_TAG failed (is deb.debian.org reachable from docker build?)"
    say "built $PROM_TAG in $(( $(date +%s) - start ))s"
fi

say "done: $TAG$( [ "$PROMETHEUS" = 1 ] && echo " and $PROM_TAG")"
