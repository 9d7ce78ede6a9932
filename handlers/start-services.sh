#!/bin/sh
# start-services.sh RUN_AS_USER SERVICE...
#
# Starts each service with systemctl when installed, else with service (SysV init,
# OpenRC). Neither tool is an error (exit 3), never a silent success. Used by AWS-Start-Application
# (one argument: a space-separated list), so services may come as one space-separated
# argument or as several. Every service is tried; failures are listed at the end.
# Starting iotjobsd itself is a no-op for systemd (it is already running).
#
# Exit codes: 0 all started; 1 at least one service failed (listed on stderr);
# 2 wrong arguments; 3 neither systemctl nor service; 4 runAsUser unusable.
set -eu

USAGE='RUN_AS_USER SERVICE...  (one space-separated argument or several)'

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

if [ $# -lt 2 ]; then usage; fi
switch_user "$@"
shift
# AWS passes the list as one argument: split on blanks, without globbing.
set -f
# shellcheck disable=SC2048,SC2086
set -- $*
set +f
[ $# -gt 0 ] || usage "no service given"
for s in "$@"; do
    case $s in -* | */*) usage "invalid service name '$s'" ;; esac
done

if command -v systemctl >/dev/null 2>&1; then
    tool=systemctl
elif command -v service >/dev/null 2>&1; then
    tool=service
else
    die 3 "neither systemctl nor service is installed; cannot start $*"
fi

is_self() { [ "$1" = iotjobsd ] || [ "$1" = iotjobsd.service ]; }

failed=
for s in "$@"; do
    say "start $s ($tool)"
    rc=0
    if [ "$tool" = systemctl ]; then
        systemctl start "$s" || rc=$?
    else
        service "$s" start || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        printf '%s: %s %s failed (status %s)\n' "$PROG" "$tool" "$s" "$rc" >&2
        failed="$failed $s"
    fi
done
[ -z "$failed" ] || die 1 "could not start:$failed"
say "started: $*"
