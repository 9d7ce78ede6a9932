#!/bin/sh
# download-file.sh RUN_AS_USER URL PATH [SHA256]
#
# Downloads URL (https://, http:// or file://) to PATH. Used by the AWS managed template
# AWS-Download-File (args: downloadUrl, filePath). PATH may be an existing directory or end
# with "/": the file name is then taken from the URL (as AWS's handler does with wget -P).
#
# - curl is used when installed, else wget (GNU or BusyBox); file:// URLs are copied without
#   either.
# - The download goes to PATH.part next to the destination. An interrupted transfer keeps
#   that file and is resumed (curl -C - / wget -c), within this run (up to
#   IOTJOBS_DOWNLOAD_ATTEMPTS attempts, default 3) and by the next run of the same step.
# - Free disk space is checked first when the size is known (Content-Length of a HEAD request).
# - With SHA256 (64 hex digits) the file is verified before it replaces PATH; on a mismatch
#   the download is deleted and PATH is left untouched.
# - PATH is replaced atomically (rename of PATH.part in the same directory).
#
# Exit codes: 0 downloaded; 2 wrong arguments; 3 no curl/wget (or no sha256sum when SHA256 is
# given); 4 runAsUser unusable; 10 HTTP error (404, 403, 5xx...) or missing file:// source;
# 11 DNS or connection failure; 12 checksum mismatch; 13 not enough disk space;
# 14 cannot create or write the destination; 15 transfer interrupted (partial kept, a re-run
# resumes); 16 TLS error; 1 any other failure.
set -eu

USAGE='RUN_AS_USER URL PATH [SHA256]'

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

if [ $# -lt 3 ] || [ $# -gt 4 ]; then usage; fi
switch_user "$@"
url=$2
dest=$3
sha=$(printf '%s' "${4:-}" | tr 'A-F' 'a-f')

case $url in
    http://?* | https://?* | file://?*) ;;
    *) usage "unsupported URL '$url' (use https://, http:// or file://)" ;;
esac
if [ -n "$sha" ]; then
    case $sha in *[!0-9a-f]*) usage "SHA256 must be 64 hexadecimal digits" ;; esac
    [ ${#sha} -eq 64 ] || usage "SHA256 must be 64 hexadecimal digits"
    command -v sha256sum >/dev/null 2>&1 || die 3 "sha256sum is not installed; cannot verify the checksum"
fi
[ -n "$dest" ] || usage "PATH is empty"

# A directory destination takes the file name from the URL (without query or fragment).
if [ -d "$dest" ] || [ "${dest%/}" != "$dest" ]; then
    name=${url%%[?#]*}
    name=${name##*/}
    [ -n "$name" ] || usage "cannot take a file name from '$url'; give a file PATH"
    dest=${dest%/}/$name
fi
case $dest in
    */*) dir=${dest%/*} && dir=${dir:-/} ;;
    *) dir=. ;;
esac
part=$dest.part

mkdir -p -- "$dir" 2>/dev/null || die 14 "cannot create directory $dir"
[ -w "$dir" ] || die 14 "directory $dir is not writable"
[ ! -d "$dest" ] || die 14 "$dest is a directory"

size_of() { if [ -f "$1" ]; then wc -c <"$1" | tr -d ' '; else echo 0; fi; }

# $1: bytes still to write. df -P gives 1024-byte blocks; the 4th field is what is available.
check_space() {
    avail=$(df -Pk -- "$dir" 2>/dev/null | { read -r _ && read -r _ _ _ a _ && echo "$a"; } || true)
    case $avail in
        '' | *[!0-9]*)
            say "cannot read free space of $dir; skipping the disk space check"
            return 0
            ;;
    esac
    need=$((($1 + 1023) / 1024))
    [ "$avail" -ge "$need" ] || die 13 "not enough disk space in $dir: need $need KiB, $avail KiB available"
    say "disk space ok: need $need KiB, $avail KiB available in $dir"
}

finish() {
    if [ -n "$sha" ]; then
        got=$(sha256sum -- "$part" | { read -r h _ && echo "$h"; })
        if [ "$got" != "$sha" ]; then
            rm -f -- "$part"
            die 12 "checksum mismatch for $url: expected $sha, got $got; $dest left unchanged"
        fi
        say "sha256 verified: $sha"
    fi
    mv -f -- "$part" "$dest" || die 14 "cannot move $part to $dest"
    say "downloaded $url to $dest ($(size_of "$dest") bytes)"
    exit 0
}

# --- file:// : a local copy, no downloader needed ---
case $url in
    file://*)
        src=${url#file://}
        src=${src#localhost}
        case $src in /*) ;; *) usage "file URL must name an absolute path" ;; esac
        [ -f "$src" ] || die 10 "source file not found: $src"
        [ -r "$src" ] || die 10 "source file not readable: $src"
        check_space "$(size_of "$src")"
        say "copying $src"
        cp -- "$src" "$part" 2>/dev/null || { rm -f -- "$part"; die 14 "cannot write $part"; }
        finish
        ;;
esac

if command -v curl >/dev/null 2>&1; then
    tool=curl
elif command -v wget >/dev/null 2>&1; then
    # BusyBox's wget (common on small gateways) has other options and only exit status 1.
    case $(wget --help 2>&1 || true) in
        *BusyBox*) tool=busybox-wget ;;
        *) tool=wget ;;
    esac
else
    die 3 "neither curl nor wget is installed; install one of them to download $url"
fi

# Size from a HEAD request: headers of the last response (after redirects) when it is 2xx.
CR=$(printf '\r')
head_length() {
    len=
    while IFS= read -r line; do
        line=${line%"$CR"}
        line=${line#"${line%%[! ]*}"}
        case $line in
            HTTP/*)
                len=
                st=${line#* }
                st=${st%% *}
                ;;
            [Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]:*)
                len=${line#*:}
                len=${len#"${len%%[! ]*}"}
                len=${len%%[! 0-9]*}
                ;;
        esac
    done
    case ${st:-} in 2??) echo "$len" ;; *) echo ;; esac
}
if [ "$tool" = curl ]; then
    length=$(curl -sSIL --connect-timeout 30 --max-time 60 -- "$url" 2>/dev/null | head_length || true)
elif [ "$tool" = wget ]; then
    length=$(wget -S --spider --tries=1 -T 60 -- "$url" 2>&1 | head_length || true)
else
    length=$(wget -S --spider -- "$url" 2>&1 | head_length || true)
fi

have=$(size_of "$part")
case $length in
    '' | *[!0-9]*)
        length=
        say "size unknown (no Content-Length); skipping the disk space check"
        ;;
    *)
        say "size $length bytes"
        if [ "$have" -gt "$length" ]; then
            say "discarding $part: larger than the remote file"
            rm -f -- "$part"
            have=0
        fi
        if [ "$have" -gt 0 ] && [ "$have" -eq "$length" ]; then
            say "$part is already complete"
            finish
        fi
        check_space $((length - have))
        ;;
esac

attempts=${IOTJOBS_DOWNLOAD_ATTEMPTS:-3}
case $attempts in '' | *[!0-9]* | 0) attempts=3 ;; esac
n=1
restarted=no
while :; do
    before=$(size_of "$part")
    if [ "$before" -gt 0 ]; then
        say "resuming at byte $before (attempt $n/$attempts)"
    else
        say "downloading $url with $tool (attempt $n/$attempts)"
    fi
    rc=0
    http=
    if [ "$tool" = curl ]; then
        http=$(curl -sS -L -f --connect-timeout 30 -C - -o "$part" -w '%{http_code}' -- "$url") || rc=$?
        case $rc in
            0) class=ok ;;
            22) class=http ;;
            5 | 6 | 7) class=connect ;;
            28) class=timeout ;;
            18 | 52 | 55 | 56 | 92 | 16) class=interrupted ;;
            33 | 36) class=norange ;;
            23) class=io ;;
            35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91) class=tls ;;
            1 | 3) class=badurl ;;
            47) class=http ;;
            *) class=other ;;
        esac
        # Resuming a file that the server says is already complete answers 416.
        [ "$class" != http ] || [ "$http" != 416 ] || class=norange
    elif [ "$tool" = wget ]; then
        wget --no-verbose --tries=1 -T 60 -c -O "$part" -- "$url" || rc=$?
        case $rc in
            0) class=ok ;;
            8) class=http ;;
            4) class=timeout ;;
            5) class=tls ;;
            3) class=io ;;
            *) class=other ;;
        esac
    else
        # Only the message tells what went wrong.
        err=$(wget -q -c -O "$part" -- "$url" 2>&1) || rc=$?
        [ -z "$err" ] || printf '%s\n' "$err" >&2
        case $rc:$err in
            0:*) class=ok ;;
            *"server returned error"*)
                class=http
                http=${err##*server returned error: HTTP/}
                http=${http#* }
                http=${http%%[!0-9]*}
                ;;
            *SSL* | *TLS* | *certificate*) class=tls ;;
            *"can't connect"* | *"bad address"* | *"timed out"* | *"Connection refused"*) class=timeout ;;
            *"can't open"* | *"write error"* | *"No space left"*) class=io ;;
            *) class=timeout ;;
        esac
    fi
    after=$(size_of "$part")
    # A timeout or network error that moved bytes is an interruption; otherwise a connection failure.
    if [ "$class" = timeout ]; then
        if [ "$after" -gt "$before" ]; then class=interrupted; else class=connect; fi
    fi
    case $class in
        ok)
            if [ -n "$length" ] && [ "$after" -ne "$length" ]; then
                class=interrupted
            else
                finish
            fi
            ;;
        norange)
            if [ "$restarted" = no ]; then
                say "server cannot resume this download; starting again from the beginning"
                rm -f -- "$part"
                restarted=yes
                continue
            fi
            class=other
            ;;
    esac
    case $class in
        interrupted)
            if [ "$n" -lt "$attempts" ]; then
                say "transfer interrupted after $after bytes; retrying"
                n=$((n + 1))
                sleep $((n - 1))
                continue
            fi
            die 15 "transfer of $url interrupted after $after bytes ($attempts attempts); $part kept, re-run to resume"
            ;;
        http)
            [ "$after" -gt 0 ] || rm -f -- "$part"
            die 10 "HTTP error${http:+ $http} for $url"
            ;;
        connect) die 11 "cannot reach the server of $url (DNS or connection failure, $tool exit $rc)" ;;
        tls) die 16 "TLS error while downloading $url ($tool exit $rc)" ;;
        io) die 14 "cannot write $part ($tool exit $rc)" ;;
        badurl) die 2 "malformed or unsupported URL $url" ;;
        *) die 1 "download of $url failed ($tool exit $rc)" ;;
    esac
done
