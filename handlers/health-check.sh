#!/bin/sh
# health-check.sh RUN_AS_USER [OPTION...] [SERVICE...]
#
# Checks that the device can take more work and reports every problem found, not just the first:
# - free disk space on / and /var (and on --path PATH, repeatable): at least --min-free-mb
#   (default 100) MiB each;
# - memory: MemAvailable at least --min-mem-mb (default 32) MiB;
# - load: the 1-minute load average at most --max-load-per-cpu (default 4) times the CPU count;
# - each SERVICE given is active (systemctl is-active, else service SERVICE status).
# One "ok"/"FAIL" line per check on stdout; the reasons again on stderr when unhealthy.
# AWS's health-check.sh only exits 0; with no option and no service this one still checks
# disk, memory and load. IOTJOBS_HEALTH_PROC (default /proc) exists for tests.
#
# Exit codes: 0 healthy; 1 unhealthy (reasons on stderr); 2 wrong arguments; 3 a service was
# named but neither systemctl nor service is installed; 4 runAsUser unusable.
set -eu

USAGE='RUN_AS_USER [--min-free-mb N] [--min-mem-mb N] [--max-load-per-cpu N] [--path PATH]... [SERVICE...]'

# --- common prologue (same in every handler; see handlers/README.md "Handler contract") ---
PROG=${0##*/}
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { rc=$1; shift; printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "$rc"; }
usage() {
    [ $# -eq 0 ] || printf '%s: error: %s\n' "$PROG" "$*" >&2
    printf 'usage: %s %s\n' "$PROG" "$USAGE" >&2
    exit 2
}
# $1 is runAsUser (AWS calling convention). iotjobsd has already switched to that user when it
# runs as root; otherwise (AWS-compatible mode, manual runs) switch here with sudo, as AWS's
# handlers do, but never silently carry on as the wrong user.
switch_user() {
    want=$1
    shift
    [ -n "$want" ] || return 0
    [ "$want" = "$(id -un 2>/dev/null || true)" ] && return 0
    id "$want" >/dev/null 2>&1 || die 4 "runAsUser '$want' does not exist on this device"
    command -v sudo >/dev/null 2>&1 || die 4 "cannot run as '$want': running as $(id -un) and sudo is not installed"
    say "running as $want (sudo)"
    exec sudo -n -u "$want" -- sh "$0" "$want" "$@"
}
# --- end of common prologue ---

if [ $# -lt 1 ]; then usage; fi
switch_user "$@"
shift

min_free_mb=100
min_mem_mb=32
max_load=4
paths='/ /var'
services=
number() {
    case $2 in '' | *[!0-9]*) usage "$1 needs a whole number" ;; esac
}
while [ $# -gt 0 ]; do
    case $1 in
        --min-free-mb | --min-mem-mb | --max-load-per-cpu | --path)
            [ $# -ge 2 ] || usage "$1 needs a value"
            case $1 in
                --min-free-mb) number "$1" "$2" && min_free_mb=$2 ;;
                --min-mem-mb) number "$1" "$2" && min_mem_mb=$2 ;;
                --max-load-per-cpu) number "$1" "$2" && max_load=$2 ;;
                --path) paths="$paths $2" ;;
            esac
            shift 2
            ;;
        -*) usage "unknown option $1" ;;
        *)
            # A service list may also come as one space-separated argument.
            services="$services $1"
            shift
            ;;
    esac
done

proc=${IOTJOBS_HEALTH_PROC:-/proc}
problems=
ok() { say "ok: $*"; }
fail() {
    say "FAIL: $*"
    problems="$problems
  - $*"
}

# Disk: df -P columns are filesystem, 1024-blocks, used, available, capacity, mount point.
set -f
for p in $paths; do
    avail=$(df -Pk -- "$p" 2>/dev/null | { read -r _ && read -r _ _ _ a _ && echo "$a"; } || true)
    case $avail in
        '' | *[!0-9]*) fail "disk: cannot read free space of $p" ;;
        *)
            if [ $((avail / 1024)) -ge "$min_free_mb" ]; then
                ok "disk $p: $((avail / 1024)) MiB free (minimum $min_free_mb)"
            else
                fail "disk $p: only $((avail / 1024)) MiB free (minimum $min_free_mb)"
            fi
            ;;
    esac
done
set +f

# Memory: MemAvailable (kernel >= 3.14), else MemFree.
mem_kb=
free_kb=
if [ -r "$proc/meminfo" ]; then
    while read -r k v _; do
        case $k in
            MemAvailable:) mem_kb=$v ;;
            MemFree:) free_kb=$v ;;
        esac
    done <"$proc/meminfo"
fi
mem_kb=${mem_kb:-$free_kb}
case $mem_kb in
    '' | *[!0-9]*) fail "memory: cannot read $proc/meminfo" ;;
    *)
        if [ $((mem_kb / 1024)) -ge "$min_mem_mb" ]; then
            ok "memory: $((mem_kb / 1024)) MiB available (minimum $min_mem_mb)"
        else
            fail "memory: only $((mem_kb / 1024)) MiB available (minimum $min_mem_mb)"
        fi
        ;;
esac

# Load: compared in hundredths, as sh has integers only.
cpus=0
if [ -r "$proc/cpuinfo" ]; then
    while read -r k _; do
        [ "$k" != processor ] || cpus=$((cpus + 1))
    done <"$proc/cpuinfo"
fi
[ "$cpus" -gt 0 ] || cpus=1
load=
if [ -r "$proc/loadavg" ]; then
    read -r load _ <"$proc/loadavg" || true
fi
case $load in
    [0-9]*.[0-9]*)
        int=${load%%.*}
        frac=${load#*.}00
        frac=${frac%"${frac#??}"}
        centi=$((int * 100 + ${frac#0}))
        limit=$((cpus * max_load * 100))
        if [ "$centi" -le "$limit" ]; then
            ok "load: $load on $cpus CPU(s) (maximum $((cpus * max_load)))"
        else
            fail "load: $load on $cpus CPU(s) is above $((cpus * max_load))"
        fi
        ;;
    *) fail "load: cannot read $proc/loadavg" ;;
esac

# Services.
set -f
# shellcheck disable=SC2086
set -- $services
set +f
if [ $# -gt 0 ]; then
    if command -v systemctl >/dev/null 2>&1; then
        tool=systemctl
    elif command -v service >/dev/null 2>&1; then
        tool=service
    else
        die 3 "cannot check services $*: neither systemctl nor service is installed"
    fi
    for s in "$@"; do
        case $s in -* | */*) usage "invalid service name '$s'" ;; esac
        if [ "$tool" = systemctl ]; then
            if systemctl is-active --quiet "$s" 2>/dev/null; then ok "service $s: active"; else fail "service $s: not active"; fi
        else
            if service "$s" status >/dev/null 2>&1; then ok "service $s: running"; else fail "service $s: not running"; fi
        fi
    done
fi

[ -z "$problems" ] || die 1 "unhealthy:$problems"
say "healthy"
