#!/bin/sh
# pre-pivot hook (both init flavours): have dracut unpack the initramfs into
# /run/initramfs at shutdown, where the bus ends, and prepare the bus's pivot
# into the real root (it opens $NEWROOT now; bootbus-pivot.service or the
# daemon itself completes the move after switch_root).
type info > /dev/null 2>&1 || . /lib/dracut-lib.sh

need_shutdown
if [ -e /run/bootbus/initrd-bus ]; then
    if _bootbus_out=$(bootbusctl --address unix:path=/run/bootbus/bus pivot --prepare "${NEWROOT:-/sysroot}" 2>&1); then
        info "bootbus: pivot into ${NEWROOT:-/sysroot} prepared"
    else
        warn "bootbus: preparing the pivot failed: $_bootbus_out"
    fi
    unset _bootbus_out
fi
