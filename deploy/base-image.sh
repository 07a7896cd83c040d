#!/usr/bin/env bash
# Builds the minimal Debian base image every OpenSpeak image starts FROM.
#
# No image registry is reachable from the machines this project runs on, so
# `FROM debian:bookworm` cannot be pulled. Instead this script makes the root
# file system itself with `debootstrap --variant=minbase` (from Debian's own
# package mirror, which is reachable) and loads it into the local Docker
# engine with `docker import`.
#
# Usage: deploy/base-image.sh [--force] [--tag TAG] [--suite SUITE] [--mirror URL]
#
#   --force    rebuild even when the tag already exists
#   --tag      image tag to create (default: openspeak/debian-base:bookworm,
#              the tag deploy/Dockerfile and deploy/prometheus/Dockerfile use)
#   --suite    Debian suite (default: bookworm, the one the binaries are
#              built against on the host; glibc must not be older than the
#              host's)
#   --mirror   Debian mirror (default: http://deb.debian.org/debian)
#
# What goes in: Debian's minbase (dpkg, apt, coreutils, bash, libc6,
# libgcc-s1, ...) plus ca-certificates. The OpenSpeak binaries are Rust
# programs that link only against glibc (libc, libm, libgcc_s; check with
# `ldd target/release/openspeak-control`), so nothing else is needed at run
# time. apt stays in, so that derived images (Prometheus) can install Debian
# packages at build time.
set -euo pipefail

TAG="openspeak/debian-base:bookworm"
SUITE="bookworm"
MIRROR="http://deb.debian.org/debian"
FORCE=0

say() { printf 'base-image: %s\n' "$*" >&2; }
die() { printf 'base-image: ERROR: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --tag) TAG="${2:?--tag needs a value}"; shift ;;
        --suite) SUITE="${2:?--suite needs a value}"; shift ;;
        --mirror) MIRROR="${2:?--mirror needs a value}"; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

command -v docker >/dev/null 2>&1 \
    || die "docker is not installed (Debian: apt-get install -y docker.io)"
docker info >/dev/null 2>&1 \
    || die "cannot talk to the Docker daemon (is it running? are you root or in the docker group?)"

if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    say "$TAG already exists ($(docker image inspect --format '{{.Id}}' "$TAG" | cut -c1-19)); skipping (--force rebuilds it)"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    die "debootstrap is missing. Install it first:
    apt-get update && apt-get install -y debootstrap
(on non-Debian hosts, your distribution's debootstrap package, plus Debian's archive keyring)"
fi
DEBOOTSTRAP="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
[ "$(id -u)" = 0 ] || die "debootstrap must run as root (it creates device nodes and chroots); run this script as root"

WORK="$(mktemp -d /var/tmp/openspeak-base.XXXXXX)"
ROOTFS="$WORK/rootfs"

cleanup() {
    # debootstrap mounts /proc and /sys inside the target while it works; an
    # interrupted run can leave them mounted. Unmount anything below the
    # root file system before deleting it, and never cross into another
    # file system while deleting.
    if [ -d "$ROOTFS" ]; then
        awk -v root="$ROOTFS" 'index($2, root) == 1 { print $2 }' /proc/mounts \
            | sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

say "building $TAG: debootstrap --variant=minbase $SUITE from $MIRROR into $ROOTFS"
say "(downloads about 40 MB of packages; takes a few minutes)"
start=$(date +%s)
if ! "$DEBOOTSTRAP" --variant=minbase --include=ca-certificates \
        "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (last lines above). Is $MIRROR reachable?"
fi
say "debootstrap done in $(( $(date +%s) - start ))s"

say "trimming the root file system (apt lists and caches, documentation, man pages)"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* \
       "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/*.log \
       "$ROOTFS"/var/log/apt/* \
       "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
# Containers get their own resolv.conf and hostname from the engine.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
# Keep future apt runs inside derived images small: no docs, no recommends.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-openspeak-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
cat >"$ROOTFS/etc/apt/apt.conf.d/01-openspeak-norecommends" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CFG
# debootstrap leaves the mirror it used as the only source; add security updates.
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$ROOTFS/etc/apt/sources.list"

say "importing into Docker as $TAG"
tar --numeric-owner --xattrs -C "$ROOTFS" -c . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.title=openspeak-debian-base org.opencontainers.image.description=debootstrap-minbase-$SUITE-plus-ca-certificates" \
        --message "debootstrap --variant=minbase --include=ca-certificates $SUITE" \
        - "$TAG" >/dev/null

size=$(docker image inspect --format '{{.Size}}' "$TAG")
say "done: $TAG ($(( size / 1024 / 1024 )) MB) in $(( $(date +%s) - start ))s"
