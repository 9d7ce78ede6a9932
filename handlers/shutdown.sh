#!/bin/sh
# shutdown.sh RUN_AS_USER [DELAY_MINUTES]
#
# Powers the device off. With DELAY_MINUTES > 0 (default 1, as AWS's handler) the power-off is
# scheduled with 'shutdown -h +MINUTES' and the script returns at once, so the daemon can
# publish SUCCEEDED before the device goes down. With 0 it powers off now: 'systemctl
# poweroff' when systemd is the init system (/run/systemd/system exists), else 'poweroff', else
# 'shutdown -h now'; the status then reaches the cloud from iotjobsd's outbox at the next boot.
# Unlike reboot.sh there is nothing to confirm afterwards: exit 0 means "power-off requested".
# IOTJOBS_SYSTEMD_DIR (default /run/systemd/system) exists for tests and containers.
#
# Exit codes: 0 power-off requested or scheduled; 1 the command failed; 2 wrong arguments;
# 3 no suitable command (shutdown for a delay; systemctl, poweroff or shutdown otherwise);
# 4 runAsUser unusable.
set -eu

USAGE='RUN_AS_USER [DELAY_MINUTES]'

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

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
delay=${2:-1}
case $delay in '' | *[!0-9]*) usage "DELAY_MINUTES must be a whole number of minutes" ;; esac
switch_user "$@"

if [ "$delay" -gt 0 ]; then
    command -v shutdown >/dev/null 2>&1 || die 3 "shutdown is not installed; cannot schedule a power-off in $delay min (use DELAY_MINUTES 0)"
    set -- shutdown -h "+$delay"
elif [ -d "${IOTJOBS_SYSTEMD_DIR:-/run/systemd/system}" ] && command -v systemctl >/dev/null 2>&1; then
    set -- systemctl poweroff
elif command -v poweroff >/dev/null 2>&1; then
    set -- poweroff
elif command -v shutdown >/dev/null 2>&1; then
    set -- shutdown -h now
else
    die 3 "no power-off command found (looked for systemctl with systemd running, poweroff, shutdown)"
fi

say "requesting power-off: $*"
rc=0
"$@" || rc=$?
[ "$rc" -eq 0 ] || die 1 "'$*' failed (status $rc)"
if [ "$delay" -gt 0 ]; then
    say "power-off scheduled in $delay min"
else
    say "power-off requested"
fi
