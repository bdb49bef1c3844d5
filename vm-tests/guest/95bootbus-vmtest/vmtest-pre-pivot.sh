#!/bin/sh
echo "BOOTBUS-VM: initrd-pre-pivot newroot=${NEWROOT:-/sysroot} init=$(readlink /proc/1/exe)" > /dev/console
