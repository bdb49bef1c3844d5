#!/bin/sh
# emergency hook (rd.break or a failed boot): what `bootbusctl status` says in
# the emergency shell's environment, then power off, as nobody types on the
# serial console of a test.
_vmtest_out=$(bootbusctl --address unix:path=/run/bootbus/bus status 2>&1)
_vmtest_rc=$?
echo "BOOTBUS-VM: emergency-status rc=$_vmtest_rc" > /dev/console
printf '%s\n' "$_vmtest_out" | while IFS= read -r _vmtest_line; do
    echo "BOOTBUS-VM-STATUS: $_vmtest_line"
done > /dev/console
echo "BOOTBUS-VM: emergency-end" > /dev/console
poweroff -f
