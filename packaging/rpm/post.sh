# iotjobsd %post ($1: 1 = install, 2 = upgrade). Same policy as the .deb: enable on
# install and start only when the configuration is complete; on upgrade restart
# without blocking (SIGTERM makes the daemon checkpoint its job), and after the package
# manager has exited when a job step of iotjobsd itself runs the upgrade. No `systemctl preset`: most RPM
# distributions' presets disable unknown services, and an agent installed on purpose
# is meant to run once configured.
mkdir -p /etc/iotjobsd/config.d
if [ "$1" -eq 1 ]; then
    systemctl enable iotjobsd.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 2 ]; then
        # Inside a job step of iotjobsd itself (dnf called by a handler: we are in
        # iotjobsd.service's cgroup), stopping the daemon would stop that step and the
        # package manager with it: restart from a transient unit once it has exited.
        pm=
        if grep -q '/iotjobsd\.service' /proc/self/cgroup 2>/dev/null; then
            pid=$PPID
            while [ "${pid:-0}" -gt 1 ]; do
                case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
                    rpm | dnf | dnf-3 | dnf5 | yum | microdnf | zypper | packagekitd) pm=$pid ;;
                esac
                pid=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)
            done
        fi
        if [ -n "$pm" ] && command -v systemd-run >/dev/null 2>&1; then
            systemd-run --no-block --quiet --collect --unit=iotjobsd-upgrade-restart \
                /bin/sh -c "while kill -0 $pm 2>/dev/null; do sleep 1; done; exec systemctl try-restart iotjobsd.service" \
                >/dev/null 2>&1 || :
        else
            systemctl --no-block try-restart iotjobsd.service >/dev/null 2>&1 || :
        fi
    elif iotjobsd check-config >/dev/null 2>&1; then
        systemctl start iotjobsd.service >/dev/null 2>&1 || :
    else
        echo "iotjobsd: enabled but not started: configure it in /etc/iotjobsd/config.toml (see 'iotjobsd check-config'), then run 'systemctl start iotjobsd'."
    fi
fi
