# iotjobsd %preun ($1: 0 = erase, 1 = upgrade). Stop only on erase: SIGTERM makes the
# daemon checkpoint a running job and exit cleanly. On upgrade the running daemon is
# left alone until %post of the new package restarts it.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable iotjobsd.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop iotjobsd.service >/dev/null 2>&1 || :
    fi
fi
