#!/bin/sh
# verify-packages-removed.sh RUN_AS_USER PACKAGE...
#
# Checks that every package is not installed, using the system's package database: dpkg-query
# (Debian, Ubuntu), else rpm (Fedora, RHEL, SUSE), else apk (Alpine). Every package is
# checked and reported (one line each on stdout) before the script exits. No AWS managed
# template uses it; AWS's sample handler of the same name takes the same arguments.
# Packages may come as one space-separated argument or as several.
#
# Exit codes: 0 no package is installed; 1 at least one is still installed (listed on stderr);
# 2 wrong arguments; 3 no dpkg-query, rpm or apk; 4 runAsUser unusable.
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
set -f
# shellcheck disable=SC2048,SC2086
set -- $*
set +f
[ $# -gt 0 ] || usage "no package given"
for p in "$@"; do
    case $p in -*) usage "invalid package name '$p' (must not start with '-')" ;; esac
done

db=
for candidate in dpkg-query rpm apk; do
    if command -v "$candidate" >/dev/null 2>&1; then
        db=$candidate
        break
    fi
done
[ -n "$db" ] || die 3 "no package database tool found (looked for dpkg-query, rpm, apk)"

# is_installed PACKAGE: 0 when installed. dpkg keeps removed-but-not-purged packages in
# state "config-files", which counts as not installed.
is_installed() {
    case $db in
        dpkg-query)
            # shellcheck disable=SC2016
            st=$(dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null || true)
            case $st in installed | installed"$NL"* | *"$NL"installed | *"$NL"installed"$NL"*) return 0 ;; esac
            return 1
            ;;
        rpm) rpm -q --quiet "$1" >/dev/null 2>&1 ;;
        apk) apk info -e "$1" >/dev/null 2>&1 ;;
    esac
}
NL='
'

bad=
for p in "$@"; do
    if is_installed "$p"; then
        say "$p: STILL installed"
        bad="$bad $p"
    else
        say "$p: not installed"
    fi
done
[ -z "$bad" ] || die 1 "still installed:$bad"
say "none installed ($db): $*"
