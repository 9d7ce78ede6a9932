# iotjobsd %post ($1: 1 = install, 2 = upgrade). Same policy as the .deb: enable on
# install and start only when the configuration is complete; on upgrade restart
# without blocking (SIGTERM makes the daemon checkpoint its job; a job step running
# this upgrade must not wait for its own restart). No `systemctl preset`: most RPM
# distributions' presets disable unknown services, and an agent installed on purpose
# is meant to run once configured.
mkdir -p /etc/iotjobsd/config.d
if [ "$1" -eq 1 ]; then
    systemctl enable iotjobsd.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 2 ]; then
        systemctl --no-block try-restart iotjobsd.service >/dev/null 2>&1 || :
    elif iotjobsd check-config >/dev/null 2>&1; then
        systemctl start iotjobsd.service >/dev/null 2>&1 || :
    else
        echo "iotjobsd: enabled but not started: configure it in /etc/iotjobsd/config.toml (see 'iotjobsd check-config'), then run 'systemctl start iotjobsd'."
    fi
fi
