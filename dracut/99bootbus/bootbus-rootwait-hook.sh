#!/bin/sh
# initqueue/finished hook of dracut's shell init, sorted before dracut's own
# (devexists-*). The first time round the main loop it starts the wait for the
# root device through the bus in the background (bootbus-rootwait); until that
# wait has an answer this hook is not finished, so the loop keeps running its
# jobs meanwhile (LVM, RAID, network storage) instead of blocking in our wait.
# The waiter records every outcome (found, timed out, failed, off) in
# /run/bootbus/rootwait; one that never does is given up after
# rd.bootbus.rootwait + ROOTWAIT_GRACE seconds. dracut's own finished hooks
# still decide when the root device is there.
[ -e /run/bootbus/rootwait ] && exit 0
[ -e /run/bootbus/initrd-bus ] || exit 0  # no bus serving: nothing to wait for
ROOTWAIT_GRACE=10
read -r _bootbus_now _bootbus_idle < /proc/uptime
_bootbus_now=${_bootbus_now%%.*}
if [ ! -e /run/bootbus/rootwait.since ]; then
    echo "$_bootbus_now" > /run/bootbus/rootwait.since
    setsid bootbus-rootwait < /dev/null &
    exit 1
fi
read -r _bootbus_since < /run/bootbus/rootwait.since
_bootbus_timeout=$(getarg rd.bootbus.rootwait=)
[ "$_bootbus_now" -gt $((_bootbus_since + ${_bootbus_timeout:-30} + ROOTWAIT_GRACE)) ]
