#!/bin/sh
# pre-udev hook of dracut's shell init (no systemd in the initramfs): start
# the bus in the background and wait until it accepts connections.
type info > /dev/null 2>&1 || . /lib/dracut-lib.sh

BOOTBUS_ADDRESS=unix:path=/run/bootbus/bus
mkdir -p /run/bootbus
: > /run/bootbus/address
# '@' in argv[0] spares the bus from systemd-shutdown's final killing (bash
# has exec -a; the daemon sets it itself when it finds /etc/initrd-release).
# stderr goes to the kernel log, which journald reads after switch_root.
if [ -n "$BASH_VERSION" ]; then
    PYTHONEXECUTABLE=/usr/bin/python3 setsid bash -c \
        'exec -a @bootbus /usr/bin/python3 -m bootbus --address "$1" --runtime-dir /run/bootbus --print-address' \
        bootbus "$BOOTBUS_ADDRESS" > /run/bootbus/address 2> /dev/kmsg < /dev/null &
else
    PYTHONEXECUTABLE=/usr/bin/python3 setsid /usr/bin/python3 -m bootbus \
        --address "$BOOTBUS_ADDRESS" --runtime-dir /run/bootbus --print-address \
        > /run/bootbus/address 2> /dev/kmsg < /dev/null &
fi

_bootbus_timeout=$(getarg rd.bootbus.timeout=)
_bootbus_wait=$((${_bootbus_timeout:-30} * 10))
while [ ! -s /run/bootbus/address ] && [ "$_bootbus_wait" -gt 0 ]; do
    sleep 0.1
    _bootbus_wait=$((_bootbus_wait - 1))
done
if [ -s /run/bootbus/address ]; then
    : > /run/bootbus/initrd-bus
    info "bootbus: serving $(cat /run/bootbus/address)"
else
    warn "bootbus: not serving after ${_bootbus_timeout:-30}s"
fi
unset _bootbus_timeout _bootbus_wait
