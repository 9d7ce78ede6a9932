#!/usr/bin/env bash
# Service test: installs the iotjobsd .deb into a Debian bookworm booted with a real
# systemd (systemd-nspawn -b) and checks what an operator relies on:
#   - apt-get install: enabled, NOT started while unconfigured;
#   - configured against a broker with mutual TLS on the host's loopback (iotjobs-local,
#     or mosquitto when no iotjobs-local binary is found): `systemctl start` reaches
#     active (READY=1) and STATUS says "connected";
#   - with iotjobs-local: a job (the packaged health-check.sh handler) runs and succeeds;
#   - the log file appears under /var/log/iotjobsd, journald gets clean lines;
#   - the watchdog restarts a hung (SIGSTOPped) daemon;
#   - reinstall/upgrade restarts it through SIGTERM and keeps an edited config;
#   - `systemctl stop` exits cleanly (status 0);
#   - `apt-get remove` keeps config and state, `apt-get purge` removes config, state, logs.
#
# Usage (as root):  packaging/vm-test.sh [path/to/iotjobsd_*.deb]
#   default package: the newest target/debian/iotjobsd_*.deb (packaging/build.sh).
# Environment:
#   IOTJOBS_VM_CACHE  where the debootstrapped base rootfs is kept
#                     (default /var/tmp/iotjobsd-vm; first run downloads ~50 MB from
#                     deb.debian.org and takes a few minutes, later runs reuse it).
#   IOTJOBS_VM_KEEP=1 keep the run directory (guest rootfs, broker logs) afterwards.
#   IOTJOBS_LOCAL_BIN iotjobs-local binary (default: target/release/iotjobs-local, else
#                     target/debug/iotjobs-local); without one, mosquitto is the broker
#                     and no job is run.
# Network: the guest shares the host's network namespace (no private network), so it
# reaches the broker on 127.0.0.1 only; nothing else is contacted except the Debian
# mirror for the one-time debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[vm-test %s] %s\n' "$(date +%T)" "$*"; }
pass() { printf '[vm-test %s] PASS: %s\n' "$(date +%T)" "$*"; }
die() {
    printf '[vm-test %s] FAIL: %s\n' "$(date +%T)" "$*" >&2
    if [ -n "${LEADER:-}" ]; then
        echo "--- journal of iotjobsd in the guest:" >&2
        guest journalctl -u iotjobsd --no-pager -n 60 >&2 || true
    fi
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (systemd-nspawn and nsenter need it)"

DEB=${1:-}
if [ -z "$DEB" ]; then
    DEB=$(find target/debian -maxdepth 1 -name 'iotjobsd_*.deb' -printf '%T@ %p\n' 2>/dev/null |
        sort -rn | head -n1 | cut -d' ' -f2- || true)
fi
[ -f "$DEB" ] || die "no .deb given and none in target/debian (run packaging/build.sh)"
DEB=$(realpath "$DEB")

need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v openssl >/dev/null || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

CACHE=${IOTJOBS_VM_CACHE:-/var/tmp/iotjobsd-vm}
BASE=$CACHE/rootfs-bookworm
if [ ! -x "$BASE/lib/systemd/systemd" ]; then
    log "debootstrap bookworm into $BASE (one time)"
    mkdir -p "$CACHE"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
        bookworm "$BASE.tmp" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed, see $CACHE/debootstrap.log"
    mv "$BASE.tmp" "$BASE"
fi

RUN=$(mktemp -d /var/tmp/iotjobsd-vmtest.XXXXXX)
ROOT=$RUN/root
MACHINE=iotjobsd-vmtest-$$
NSPAWN_PID=
BROKER_PID=
LEADER=

cleanup() {
    set +e
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # nspawn turns SIGTERM into an orderly poweroff of the guest.
        kill -TERM "$NSPAWN_PID"
        for _ in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null
    fi
    if [ -n "$BROKER_PID" ]; then kill -TERM "$BROKER_PID" 2>/dev/null; fi
    if [ "${IOTJOBS_VM_KEEP:-0}" = 1 ]; then
        log "kept $RUN"
    else
        rm -rf "$RUN"
    fi
}
trap cleanup EXIT

# Runs a command inside the booted guest (all its namespaces, its root).
guest() {
    nsenter -t "$LEADER" -m -u -i -p -n -r -w -- \
        /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local _
    for _ in $(seq $((secs * 2))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "timed out after ${secs}s waiting for: $what"
}

prop() { guest systemctl show -P "$1" iotjobsd.service; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)"; }

LOCAL_BIN=${IOTJOBS_LOCAL_BIN:-}
if [ -z "$LOCAL_BIN" ]; then
    for b in target/release/iotjobs-local target/debug/iotjobs-local; do
        if [ -x "$b" ]; then LOCAL_BIN=$(realpath "$b"); break; fi
    done
fi
PKI=$RUN/pki
mkdir -p "$PKI"
chmod 755 "$RUN" "$PKI"
PORT=$(free_port)

if [ -n "$LOCAL_BIN" ]; then
    # --- Broker and Jobs service: iotjobs-local on the host's loopback ----------------
    HTTP_PORT=$(free_port)
    export IOTJOBS_LOCAL_ENDPOINT=http://127.0.0.1:$HTTP_PORT
    "$LOCAL_BIN" serve --data-dir "$RUN/local" --mqtt-addr "127.0.0.1:$PORT" \
        --http-addr "127.0.0.1:$HTTP_PORT" >"$RUN/local.log" 2>&1 &
    BROKER_PID=$!
    wait_for 60 "iotjobs-local listening on 127.0.0.1:$HTTP_PORT" port_open "$HTTP_PORT"
    "$LOCAL_BIN" create-thing vm-gw --out "$RUN/device" >"$RUN/create-thing.log" 2>&1 ||
        { cat "$RUN/create-thing.log"; die "iotjobs-local create-thing failed"; }
    cp "$RUN/device/cert.pem" "$PKI/device.crt"
    cp "$RUN/device/key.pem" "$PKI/device.key"
    cp "$RUN/device/root-ca.pem" "$PKI/ca.crt"
    ENDPOINT=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["mqtt"]["endpoint"])' "$RUN/device/config.toml")
    log "$("$LOCAL_BIN" --version) (pid $BROKER_PID): MQTT $ENDPOINT:$PORT, control plane $IOTJOBS_LOCAL_ENDPOINT"
else
    # --- Broker: mosquitto with mutual TLS on the host's loopback ------------------------
    log "no iotjobs-local binary: mosquitto is the broker, no job will run"
    ENDPOINT=127.0.0.1
    openssl_quiet() { openssl "$@" >/dev/null 2>&1 || die "openssl $1 failed"; }
    openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key"
    openssl_quiet req -x509 -new -key "$PKI/ca.key" -days 2 -subj "/CN=iotjobsd vm-test CA" -out "$PKI/ca.crt"
    for who in server device; do
        openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/$who.key"
    done
    openssl_quiet req -new -key "$PKI/server.key" -subj "/CN=127.0.0.1" -out "$PKI/server.csr"
    openssl_quiet req -new -key "$PKI/device.key" -subj "/CN=vm-gw" -out "$PKI/device.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$PKI/server.ext"
    printf 'extendedKeyUsage=clientAuth\n' >"$PKI/device.ext"
    for who in server device; do
        openssl_quiet x509 -req -in "$PKI/$who.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
            -CAcreateserial -days 2 -extfile "$PKI/$who.ext" -out "$PKI/$who.crt"
    done
    # mosquitto drops root for user "mosquitto" before it reads the key.
    chmod 644 "$PKI/server.key"
    cat >"$RUN/mosquitto.conf" <<EOF
per_listener_settings true
listener $PORT 127.0.0.1
cafile $PKI/ca.crt
certfile $PKI/server.crt
keyfile $PKI/server.key
require_certificate true
use_identity_as_username true
allow_anonymous false
log_dest file $RUN/mosquitto.log
log_type all
connection_messages true
EOF
    touch "$RUN/mosquitto.log"
    chmod 666 "$RUN/mosquitto.log"
    mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.out" 2>&1 &
    BROKER_PID=$!
    wait_for 10 "mosquitto listening on 127.0.0.1:$PORT" port_open "$PORT"
    log "mosquitto (pid $BROKER_PID) on 127.0.0.1:$PORT with mutual TLS"
fi

# --- Boot the guest -----------------------------------------------------------------
log "copying base rootfs to $ROOT"
cp -a "$BASE" "$ROOT"
cp "$DEB" "$ROOT/root/"
PKG=/root/$(basename "$DEB")
# The package the reinstall step uses: the self-upgrade job replaces it with a newer one.
REINSTALL_PKG=$PKG
# --keep-unit/--register=no: the host need not run systemd (no D-Bus, no machined).
systemd-nspawn -D "$ROOT" -b --machine="$MACHINE" --register=no --keep-unit \
    --console=passive >"$RUN/nspawn.log" 2>&1 &
NSPAWN_PID=$!
find_leader() {
    LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd | head -n1)
    [ -n "$LEADER" ]
}
wait_for 30 "the guest's systemd to start" find_leader
wait_for 120 "the guest to finish booting" guest systemctl is-system-running --wait
pass "guest booted: $(guest systemctl --version | head -n1), state $(guest systemctl is-system-running || true)"

# --- Install: enabled, not started -------------------------------------------------
guest apt-get install -y -q "$PKG" >"$RUN/install.log" 2>&1 || { cat "$RUN/install.log"; die "apt-get install failed"; }
grep -q "enabled but not started" "$RUN/install.log" || die "postinst did not explain why it did not start"
[ "$(guest systemctl is-enabled iotjobsd)" = enabled ] || die "not enabled after install"
state=$(guest systemctl is-active iotjobsd || true)
[ "$state" = inactive ] || die "unconfigured service is $state after install, expected inactive"
guest test -f /etc/iotjobsd/config.toml || die "no /etc/iotjobsd/config.toml"
guest test -d /etc/iotjobsd/config.d || die "no /etc/iotjobsd/config.d"
pass "apt-get install: enabled, not started (unconfigured): $(grep 'enabled but not started' "$RUN/install.log")"

# An unconfigured start fails once, clearly, and does not loop.
guest systemctl start iotjobsd 2>/dev/null && die "start succeeded without configuration"
pass "unconfigured start fails: $(guest journalctl -u iotjobsd -o cat --no-pager | grep -m1 -i 'problem' || echo '(see journal)')"
# Cancel the pending Restart=on-failure attempt before configuring.
guest systemctl stop iotjobsd
guest systemctl reset-failed iotjobsd

# --- Configure and start -------------------------------------------------------------
guest mkdir -p /etc/iotjobsd/certs
for f in ca.crt device.crt device.key; do cp "$PKI/$f" "$ROOT/etc/iotjobsd/certs/$f"; done
chmod 600 "$ROOT/etc/iotjobsd/certs/device.key"
cat >"$ROOT/etc/iotjobsd/config.d/50-vmtest.toml" <<EOF
[mqtt]
endpoint = "$ENDPOINT"
port = $PORT
thing_name = "vm-gw"
cert = "/etc/iotjobsd/certs/device.crt"
key = "/etc/iotjobsd/certs/device.key"
root_ca = "/etc/iotjobsd/certs/ca.crt"

[log]
# The file stays on (default); stdout goes to the journal as well.
stdout = true
EOF
guest iotjobsd check-config >"$RUN/check-config.log" 2>&1 || { cat "$RUN/check-config.log"; die "check-config rejects the test config"; }
pass "iotjobsd check-config accepts the configuration"

guest systemctl start iotjobsd || die "systemctl start failed"
[ "$(guest systemctl is-active iotjobsd)" = active ] || die "not active after start"
pass "systemctl start returned with the unit active (Type=notify: READY=1 received), MainPID $(prop MainPID)"
connected() { prop StatusText | grep -q "^connected"; }
wait_for 30 "STATUS= to say connected" connected
pass "STATUS: $(prop StatusText)"
if [ -z "$LOCAL_BIN" ]; then
    grep -q "New client connected.* as vm-gw" "$RUN/mosquitto.log" || die "mosquitto saw no client vm-gw"
    pass "broker: $(grep -m1 'New client connected.* as vm-gw' "$RUN/mosquitto.log" | cut -d' ' -f2-)"
fi

wait_for 10 "the log file" guest test -s /var/log/iotjobsd/iotjobsd.log
pass "log file: $(guest ls -l /var/log/iotjobsd/ | tail -n +2 | tr '\n' ' ')"
pass "log line: $(guest sh -c 'tail -n 1 /var/log/iotjobsd/iotjobsd.log')"
pass "journal (systemd): $(guest journalctl -u iotjobsd -o cat --no-pager | grep -m1 'Started')"
# journald stamps lines itself: the daemon's lines must carry no timestamp and no
# colour codes, and a priority (info = 6) rather than everything at one level.
jline=$(guest journalctl -u iotjobsd _PID="$(prop MainPID)" -o cat --no-pager | grep -m1 'connected to') ||
    die "no 'connected to' line from the daemon in the journal"
case "$jline" in
    20[0-9][0-9]-*) die "journal line carries its own timestamp: $jline" ;;
    *$'\e'*) die "journal line carries escape codes: $jline" ;;
esac
prio=$(guest journalctl -u iotjobsd _PID="$(prop MainPID)" -o json --no-pager | grep -m1 'connected to' |
    python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["PRIORITY"])')
[ "$prio" = 6 ] || die "journal priority of an info line is $prio, expected 6"
pass "journal (daemon, PRIORITY=$prio): $jline"

# --- A job: the packaged health-check.sh handler, through iotjobs-local -------------
if [ -n "$LOCAL_BIN" ]; then
    cat >"$RUN/job.json" <<'EOF'
{"version": "1.0", "steps": [{"action": {"name": "health", "type": "runHandler",
  "input": {"handler": "health-check.sh", "path": "default",
            "args": ["--min-free-mb", "1", "--max-load-per-cpu", "1000", "iotjobsd"]},
  "runAsUser": "root"}}]}
EOF
    "$LOCAL_BIN" create-job --job-id vm-health --targets thing/vm-gw \
        --document "file://$RUN/job.json" >"$RUN/create-job.log" 2>&1 ||
        { cat "$RUN/create-job.log"; die "create-job failed"; }
    timeout 120 "$LOCAL_BIN" watch vm-health --interval 0.5 >"$RUN/watch.log" 2>&1 ||
        { cat "$RUN/watch.log"; die "job vm-health did not succeed"; }
    "$LOCAL_BIN" --output json describe-job-execution --job-id vm-health --thing-name vm-gw \
        >"$RUN/execution.json" 2>&1 || { cat "$RUN/execution.json"; die "describe-job-execution failed"; }
    python3 - "$RUN/execution.json" <<'EOF' || die "execution not SUCCEEDED: $(cat "$RUN/execution.json")"
import json, sys
e = json.load(open(sys.argv[1]))
e = e.get("execution", e)
assert e["status"] == "SUCCEEDED", e["status"]
EOF
    pass "job vm-health: $(tail -n 1 "$RUN/watch.log")"
    guest grep -q 'sandbox::output: health-check.sh' /var/log/iotjobsd/iotjobsd.log ||
        die "the handler's output is not in the log file"
    pass "handler output in the log: $(guest grep -m1 'sandbox::output: health-check.sh' /var/log/iotjobsd/iotjobsd.log | cut -c1-200)"
fi

# --- Watchdog: a hung daemon is aborted and restarted ----------------------------------
pid=$(prop MainPID)
restarts=$(prop NRestarts)
log "SIGSTOP to MainPID $pid (WatchdogSec=$(prop WatchdogUSec), TimeoutAbortSec=$(prop TimeoutAbortUSec))"
guest kill -STOP "$pid"
new_main() { p=$(prop MainPID); [ "$p" != 0 ] && [ "$p" != "$pid" ] && [ "$(guest systemctl is-active iotjobsd)" = active ]; }
wait_for 120 "the watchdog to restart the daemon" new_main
pass "watchdog: MainPID $pid -> $(prop MainPID), NRestarts $restarts -> $(prop NRestarts)"
pass "journal: $(guest journalctl -u iotjobsd -o cat --no-pager | grep -m1 -i 'watchdog timeout')"

# --- Self-upgrade as a job: install-packages.sh installs a newer iotjobsd ------------
# The postinst runs inside the daemon's own cgroup here; it must leave dpkg alone and
# restart the daemon only after apt has exited, and the job must still succeed.
if [ -n "$LOCAL_BIN" ]; then
    # shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
    old_version=$(guest dpkg-query -W -f '${Version}' iotjobsd)
    new_version=$old_version+vmtest1
    dpkg-deb -R "$DEB" "$RUN/repack"
    sed -i "s/^Version: .*/Version: $new_version/" "$RUN/repack/DEBIAN/control"
    dpkg-deb -b "$RUN/repack" "$ROOT/root/iotjobsd-upgrade.deb" >/dev/null
    pid=$(prop MainPID)
    cat >"$RUN/upgrade-job.json" <<'EOF'
{"version": "1.0", "steps": [{"action": {"name": "upgrade", "type": "runHandler",
  "input": {"handler": "install-packages.sh", "path": "default",
            "args": ["/root/iotjobsd-upgrade.deb"]},
  "runAsUser": "root"}}]}
EOF
    "$LOCAL_BIN" create-job --job-id vm-upgrade --targets thing/vm-gw \
        --document "file://$RUN/upgrade-job.json" >"$RUN/create-job.log" 2>&1 ||
        { cat "$RUN/create-job.log"; die "create-job failed"; }
    timeout 180 "$LOCAL_BIN" watch vm-upgrade --interval 0.5 >"$RUN/watch-upgrade.log" 2>&1 ||
        { cat "$RUN/watch-upgrade.log"; die "job vm-upgrade did not succeed"; }
    pass "job vm-upgrade: $(tail -n 1 "$RUN/watch-upgrade.log")"
    # shellcheck disable=SC2016
    status=$(guest dpkg-query -W -f '${Version} ${db:Status-Abbrev}' iotjobsd)
    [ "$status" = "$new_version ii " ] || die "after the self-upgrade dpkg says: $status"
    wait_for 60 "the daemon to restart after the self-upgrade" new_main
    REINSTALL_PKG=/root/iotjobsd-upgrade.deb
    pass "self-upgrade: dpkg completed ($status), MainPID $pid -> $(prop MainPID)"
    pass "deferred restart: $(guest journalctl -u iotjobsd-upgrade-restart -o cat --no-pager | tr '\n' ' ' | cut -c1-200)"
fi

# --- Upgrade (reinstall): restart via SIGTERM, edited conffile kept -------------------
echo "# edited by the operator" >>"$ROOT/etc/iotjobsd/config.toml"
pid=$(prop MainPID)
guest apt-get install -y -q --reinstall "$REINSTALL_PKG" >"$RUN/reinstall.log" 2>&1 || { cat "$RUN/reinstall.log"; die "reinstall failed"; }
wait_for 60 "the restart after upgrade" new_main
guest grep -q "edited by the operator" /etc/iotjobsd/config.toml || die "upgrade replaced the edited config"
pass "upgrade: daemon restarted (MainPID $pid -> $(prop MainPID)), edited config.toml kept"

# --- The hardened.conf example drop-in: the daemon still runs and a job still succeeds ---
mkdir -p "$ROOT/etc/systemd/system/iotjobsd.service.d"
guest cp /usr/share/doc/iotjobsd/examples/hardened.conf /etc/systemd/system/iotjobsd.service.d/
guest systemctl daemon-reload
guest systemctl restart iotjobsd || die "restart with hardened.conf failed"
wait_for 30 "STATUS= to say connected (hardened)" connected
[ "$(prop ProtectSystem)" = strict ] || die "hardened.conf not applied"
if [ -n "$LOCAL_BIN" ]; then
    "$LOCAL_BIN" create-job --job-id vm-health-hardened --targets thing/vm-gw \
        --document "file://$RUN/job.json" >"$RUN/create-job.log" 2>&1 ||
        { cat "$RUN/create-job.log"; die "create-job failed"; }
    timeout 120 "$LOCAL_BIN" watch vm-health-hardened --interval 0.5 >"$RUN/watch-hardened.log" 2>&1 ||
        { cat "$RUN/watch-hardened.log"; die "job vm-health-hardened did not succeed"; }
fi
pass "hardened.conf (ProtectSystem=$(prop ProtectSystem), NoNewPrivileges=$(prop NoNewPrivileges)): $(prop StatusText)${LOCAL_BIN:+; job vm-health-hardened: $(tail -n 1 "$RUN/watch-hardened.log")}"
guest rm -r /etc/systemd/system/iotjobsd.service.d
guest systemctl daemon-reload
guest systemctl restart iotjobsd

# --- Stop: clean exit, also in the middle of a job step ----------------------------------
# KillMode=mixed: only the daemon gets SIGTERM; it checkpoints the job and stops the step
# itself (jobs.on_shutdown = "stop"), well within TimeoutStopSec, so systemd never has to
# SIGKILL anything.
step_pid=
if [ -n "$LOCAL_BIN" ]; then
    cat >"$RUN/long-job.json" <<'EOF'
{"version": "1.0", "steps": [{"action": {"name": "long", "type": "runCommand",
  "input": {"command": "/bin/sh,-c,echo $$ >/run/vmtest-step.pid; exec sleep 600"},
  "runAsUser": "root"}}]}
EOF
    "$LOCAL_BIN" create-job --job-id vm-long --targets thing/vm-gw \
        --document "file://$RUN/long-job.json" >"$RUN/create-job.log" 2>&1 ||
        { cat "$RUN/create-job.log"; die "create-job failed"; }
    wait_for 60 "the long step to start" guest test -s /run/vmtest-step.pid
    step_pid=$(guest cat /run/vmtest-step.pid)
    guest kill -0 "$step_pid" || die "step process $step_pid is not running"
    log "job vm-long: step running as pid $step_pid; stopping the service"
fi
stop_from=$(guest date +%s.%N)
guest systemctl stop iotjobsd
stop_took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$stop_from" "$(guest date +%s.%N)")
[ "$(prop Result)" = success ] || die "stop result $(prop Result)"
[ "$(prop ExecMainStatus)" = 0 ] || die "exit status $(prop ExecMainStatus)"
if [ -n "$step_pid" ]; then
    guest kill -0 "$step_pid" 2>/dev/null && die "step process $step_pid survived the stop"
    guest journalctl -u iotjobsd --since "@${stop_from%.*}" -o cat --no-pager | grep -q 'SIGKILL' &&
        die "systemd had to SIGKILL: $(guest journalctl -u iotjobsd --since "@${stop_from%.*}" -o cat --no-pager | grep SIGKILL)"
    pass "systemctl stop during a step: Result=$(prop Result), exit status $(prop ExecMainStatus), step pid $step_pid gone, no SIGKILL from systemd, ${stop_took}s"
    pass "daemon's own account: $(guest journalctl -u iotjobsd --since "@${stop_from%.*}" _PID="$(prop ExecMainPID)" -o cat --no-pager | grep -v 'output:' | tr '\n' '|' | cut -c1-400)"
else
    pass "systemctl stop: Result=$(prop Result), exit status $(prop ExecMainStatus), ${stop_took}s"
fi
guest systemctl start iotjobsd
if [ -n "$step_pid" ]; then
    # Resuming the job is the durability engine's business (issue 4); shown, not checked.
    sleep 3
    log "after restart: $(guest journalctl -u iotjobsd _PID="$(prop MainPID)" -o cat --no-pager | grep -m3 -i 'vm-long' | tr '\n' '|' | cut -c1-300)"
    "$LOCAL_BIN" cancel-job --job-id vm-long --force >/dev/null 2>&1 || true
fi

# --- Remove and purge -------------------------------------------------------------------
guest apt-get remove -y -q iotjobsd >"$RUN/remove.log" 2>&1 || { cat "$RUN/remove.log"; die "apt-get remove failed"; }
[ "$(guest systemctl is-active iotjobsd || true)" = inactive ] || die "still running after remove"
guest test ! -e /usr/bin/iotjobsd || die "binary left after remove"
guest test -f /etc/iotjobsd/config.toml || die "remove deleted the config"
guest test -d /var/lib/iotjobsd || die "remove deleted the state"
pass "apt-get remove: stopped, binary gone, config and state kept"
guest apt-get purge -y -q iotjobsd >"$RUN/purge.log" 2>&1 || { cat "$RUN/purge.log"; die "apt-get purge failed"; }
for p in /etc/iotjobsd/config.toml /var/lib/iotjobsd /var/log/iotjobsd /etc/systemd/system/multi-user.target.wants/iotjobsd.service; do
    guest test ! -e "$p" || die "$p left after purge"
done
guest test -f /etc/iotjobsd/certs/device.key || die "purge deleted operator files (certificates)"
pass "apt-get purge: config, state, logs and enablement gone; operator's certificates kept"
log "all checks passed"
