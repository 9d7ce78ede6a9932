#!/bin/sh
# remove-packages.sh RUN_AS_USER PACKAGE...
#
# Removes packages with the first package manager found, in this order: apt-get, dnf, yum,
# zypper, apk. Used by AWS-Remove-Application (one argument: a space-separated list), so the
# packages may come as one space-separated argument or as several.
# apt-get removes with --purge (configuration files too), as AWS's handler does.
#
# Exit codes: 0 removed; 1 the package manager failed; 2 wrong arguments; 3 no supported
# package manager; 4 runAsUser unusable.
set -eu

USAGE='RUN_AS_USER PACKAGE...  (one space-separated argument or several)'

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
[ $# -gt 0 ] || usage "no package given"
for p in "$@"; do
    case $p in -*) usage "invalid package name '$p' (must not start with '-')" ;; esac
done

pm=
for candidate in apt-get dnf yum zypper apk; do
    if command -v "$candidate" >/dev/null 2>&1; then
        pm=$candidate
        break
    fi
done
[ -n "$pm" ] || die 3 "no supported package manager found (looked for apt-get, dnf, yum, zypper, apk)"

say "removing $* with $pm"
rc=0
case $pm in
    apt-get)
        DEBIAN_FRONTEND=noninteractive
        export DEBIAN_FRONTEND
        apt-get remove -y -q --purge "$@" || rc=$?
        ;;
    dnf) dnf remove -y "$@" || rc=$? ;;
    yum) yum remove -y "$@" || rc=$? ;;
    zypper) zypper --non-interactive remove "$@" || rc=$? ;;
    apk) apk del "$@" || rc=$? ;;
esac
[ "$rc" -eq 0 ] || die 1 "$pm failed to remove $* (status $rc)"
say "removed $*"
