#!/bin/sh
# shutdown hook, in the unpacked /run/initramfs after the real root was
# unmounted: record that the bus still serves (the daemon ends at poweroff).
# The real root's /run is at /oldsys/run here (dracut's shutdown moved it).
type info > /dev/null 2>&1 || . /lib/dracut-lib.sh

for _bootbus_socket in /run/bootbus/bus /oldsys/run/bootbus/bus; do
    [ -S "$_bootbus_socket" ] && break
done
if _bootbus_out=$(bootbusctl --address "unix:path=$_bootbus_socket" status 2>&1); then
    info "bootbus: serving at the last shutdown step"
else
    warn "bootbus: not serving at the last shutdown step: $_bootbus_out"
fi
unset _bootbus_out _bootbus_socket
return 0 2> /dev/null || exit 0
