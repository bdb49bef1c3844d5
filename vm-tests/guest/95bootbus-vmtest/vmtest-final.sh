#!/bin/sh
# dracut's last shutdown hook, in /run/initramfs with the real root unmounted.
echo "BOOTBUS-VM: final-hook oldroot_mounted=$(grep -c ' /oldroot' /proc/mounts)" > /dev/console
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 /usr/lib/bootbus-vmtest/vmclient.py ping --tag final
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 /usr/lib/bootbus-vmtest/vmclient.py daemon --tag final
return 0 2> /dev/null || exit 0
