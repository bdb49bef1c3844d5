#!/bin/sh
# Marks the moment of the pivot: initramfs records in the real root's journal
# must carry times before it (/run survives switch_root).
read -r _vmtest_uptime _ < /proc/uptime
echo "$_vmtest_uptime" > /run/bootbus-vmtest-pivot-uptime
echo "BOOTBUS-VM: initrd-pre-pivot newroot=${NEWROOT:-/sysroot} init=$(readlink /proc/1/exe) uptime=$_vmtest_uptime" > /dev/console
unset _vmtest_uptime
