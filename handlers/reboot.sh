#!/bin/sh
# reboot.sh RUN_AS_USER [DELAY_SECONDS]
#
# Requests a reboot. Used by AWS-Reboot (no arguments after runAsUser).
# Command: 'systemctl reboot' when systemd is the init system (/run/systemd/system exists),
# else 'reboot', else 'shutdown -r now'. With DELAY_SECONDS the request waits that long first.
#
# Idempotent across the reboot, by boot id, never by clock (AWS's lock file compares times and
# fails on devices whose clock jumps at boot, issue #338):
# - before requesting the reboot it writes a marker (boot id + job/execution/step from the
#   IOTJOBS_* environment) to $IOTJOBS_REBOOT_STATE_DIR (default /var/tmp/iotjobs-reboot-UID);
# - run again for the same job step after the boot id changed, it reports "reboot completed"
#   and exits 0 without rebooting again. iotjobsd itself judges completion by the boot id in
#   its journal and does not need to run it again; this protects other runners.
# Under iotjobsd (IOTJOBS_JOB_ID set) it exits 0 as soon as the reboot is requested: the daemon
# keeps the step open until the boot id changes. Without it (AWS's Device Client, manual runs)
# it waits up to IOTJOBS_REBOOT_WAIT seconds (default 300) to be stopped by the shutdown, so the
# caller cannot report success before the reboot, then fails.
# IOTJOBS_BOOT_ID_FILE (default /proc/sys/kernel/random/boot_id) and IOTJOBS_SYSTEMD_DIR
# (default /run/systemd/system) exist for tests and containers.
#
# Exit codes: 0 reboot requested (or completed, when run again after it); 1 the reboot command
# failed, or the system did not go down within IOTJOBS_REBOOT_WAIT; 2 wrong arguments;
# 3 no reboot command (systemctl, reboot, shutdown); 4 runAsUser unusable; 5 cannot read the
# boot id or use the state directory.
set -eu

USAGE='RUN_AS_USER [DELAY_SECONDS]'

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
delay=${2:-0}
case $delay in '' | *[!0-9]*) usage "DELAY_SECONDS must be a whole number of seconds" ;; esac
switch_user "$@"

boot_id_file=${IOTJOBS_BOOT_ID_FILE:-/proc/sys/kernel/random/boot_id}
boot_id=$(cat -- "$boot_id_file" 2>/dev/null) || die 5 "cannot read the boot id from $boot_id_file"
[ -n "$boot_id" ] || die 5 "empty boot id in $boot_id_file"

state_dir=${IOTJOBS_REBOOT_STATE_DIR:-/var/tmp/iotjobs-reboot-$(id -u)}
(umask 077 && mkdir -p -- "$state_dir") 2>/dev/null || die 5 "cannot create $state_dir"
# Another user's directory could hold a forged marker that fakes a completed reboot.
[ -O "$state_dir" ] || die 5 "$state_dir is not owned by $(id -un); remove it or set IOTJOBS_REBOOT_STATE_DIR"
marker=$state_dir/pending
key="job=${IOTJOBS_JOB_ID:-} execution=${IOTJOBS_EXECUTION_NUMBER:-} step=${IOTJOBS_STEP:-}"

if [ -f "$marker" ]; then
    m_boot=
    m_key=
    { read -r m_boot && read -r m_key; } <"$marker" || true
    if [ "$m_key" = "$key" ] && [ -n "$m_boot" ] && [ "$m_boot" != "$boot_id" ]; then
        rm -f -- "$marker"
        say "reboot completed (boot id changed from $m_boot to $boot_id)"
        exit 0
    fi
fi

if [ -d "${IOTJOBS_SYSTEMD_DIR:-/run/systemd/system}" ] && command -v systemctl >/dev/null 2>&1; then
    set -- systemctl reboot
elif command -v reboot >/dev/null 2>&1; then
    set -- reboot
elif command -v shutdown >/dev/null 2>&1; then
    set -- shutdown -r now
else
    die 3 "no reboot command found (looked for systemctl with systemd running, reboot, shutdown)"
fi

if [ "$delay" -gt 0 ]; then
    say "rebooting in $delay s"
    sleep "$delay"
fi
printf '%s\n%s\n' "$boot_id" "$key" >"$marker" || die 5 "cannot write $marker"
say "requesting reboot: $* (boot id $boot_id)"
rc=0
"$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    rm -f -- "$marker"
    die 1 "'$*' failed (status $rc)"
fi

if [ -n "${IOTJOBS_JOB_ID:-}" ]; then
    say "reboot requested; iotjobsd completes this step once the boot id has changed"
    exit 0
fi
wait_s=${IOTJOBS_REBOOT_WAIT:-300}
case $wait_s in '' | *[!0-9]*) wait_s=300 ;; esac
say "reboot requested; waiting up to $wait_s s for the system to go down"
sleep "$wait_s"
rm -f -- "$marker"
die 1 "reboot requested but the system is still up after $wait_s s"
