# iotjobsd %postun ($1: 0 = erase, 1 = upgrade). RPM has no purge: state in
# /var/lib/iotjobsd and logs in /var/log/iotjobsd are kept on erase (a reinstall asks
# the service about any journalled job before resuming it); delete them by hand.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
