#!/bin/bash
# Test-only dracut module of the VM tests: the jeepney client that connects in
# the initramfs and lives to poweroff, and hooks that print markers on the
# console. Never for a real system.

check() {
    return 255
}

depends() {
    echo bootbus
    return 0
}

install() {
    local _src _dst
    # The client and what it imports, found the way bootbus's own files are.
    while IFS=$'\t' read -r _src _dst; do
        [[ $_src ]] && inst_simple "$_src" "${_dst:-$_src}"
    done < <(cd / && PYTHONPATH="$BOOTBUS_SOURCE" /usr/bin/python3 -m bootbus.initramfs list \
        --with-module jeepney.io.blocking --with-module jeepney.bus_messages \
        --with-module argparse \
        --with-module json --with-module subprocess)
    inst_simple "$moddir/vmclient.py" /usr/lib/bootbus-vmtest/vmclient.py
    inst_hook pre-pivot 99 "$moddir/vmtest-pre-pivot.sh"
    inst_hook shutdown 99 "$moddir/vmtest-final.sh"
    inst_hook emergency 99 "$moddir/vmtest-emergency.sh"
    inst_multiple poweroff
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/bootbus-vmtest-client.service" \
            "$systemdsystemunitdir/bootbus-vmtest-client.service"
        mkdir -p "${initdir}${systemdsystemunitdir}/initrd.target.wants"
        ln_r "$systemdsystemunitdir/bootbus-vmtest-client.service" \
            "$systemdsystemunitdir/initrd.target.wants/bootbus-vmtest-client.service"
    else
        inst_hook pre-udev 50 "$moddir/vmtest-client-start.sh"
    fi
}
