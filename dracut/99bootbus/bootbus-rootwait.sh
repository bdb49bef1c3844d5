#!/bin/sh
# Waits for the root block device through the bus, once per boot: dracut's
# shell init starts it in the background from an initqueue/finished hook, its
# systemd flavour runs it from bootbus-rootwait.service. `bootbusctl wait-root` asks org.bootbus.Devices1
# for the device root= names (answered by the bus's device monitor, at once
# if it is there) and logs the answer in the step log. Always exits 0: when
# the bus is not serving, times out or fails, dracut's or systemd's own wait
# for the root device goes on as without bootbus.
#   rd.bootbus.rootwait=SECONDS  how long to wait through the bus (30; 0: never)
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh

BOOTBUS_ROOTWAIT_DONE=/run/bootbus/rootwait
[ -e "$BOOTBUS_ROOTWAIT_DONE" ] && exit 0
# Not serving: nothing to ask; recorded, so that the shell init's finished hook
# does not wait for an answer that cannot come.
if [ ! -e /run/bootbus/initrd-bus ]; then
    echo no-bus > "$BOOTBUS_ROOTWAIT_DONE"
    exit 0
fi

_bootbus_timeout=$(getarg rd.bootbus.rootwait=)
_bootbus_timeout=${_bootbus_timeout:-30}
_bootbus_root=$(getarg root=)
if [ "$_bootbus_timeout" = 0 ]; then
    info "bootbus: rd.bootbus.rootwait=0, the root device is not waited for through the bus"
    echo off > "$BOOTBUS_ROOTWAIT_DONE"
    exit 0
fi
_bootbus_out=$(bootbusctl --address unix:path=/run/bootbus/bus wait-root \
    --timeout "$_bootbus_timeout" "$_bootbus_root" 2>&1)
_bootbus_rc=$?
case $_bootbus_rc in
    0) info "bootbus: root device root=$_bootbus_root found through the bus: $_bootbus_out" ;;
    4) warn "bootbus: root device root=$_bootbus_root not found through the bus within ${_bootbus_timeout}s, dracut waits on" ;;
    5) info "bootbus: root=$_bootbus_root is no block device the bus waits for" ;;
    *) warn "bootbus: waiting for the root device through the bus failed: $_bootbus_out" ;;
esac
echo "$_bootbus_rc" > "$BOOTBUS_ROOTWAIT_DONE"
exit 0
