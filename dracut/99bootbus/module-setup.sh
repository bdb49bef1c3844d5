#!/bin/bash
# dracut module for bootbus, the D-Bus compatible bus that lives from the
# initramfs to poweroff.
#
# Installs /usr/bin/python3, exactly the modules bootbus imports and their
# shared-library closure (computed by `python3 -m bootbus.initramfs list`,
# with pyelftools, no ldd), bootbus itself and a bootbusctl wrapper. With
# dracut's systemd module the bus is bootbus-initrd.service; with dracut's
# shell init a pre-udev hook starts it. Both prepare the pivot into the real
# root in a pre-pivot hook and ask dracut to unpack the initramfs into
# /run/initramfs at shutdown, where the bus keeps serving. Both wait for the
# root device through the bus (bootbus-rootwait: an initqueue/finished hook
# of the shell init, bootbus-rootwait.service before sysroot.mount with
# systemd), bounded by rd.bootbus.rootwait=SECONDS and never in the way of
# dracut's or systemd's own wait.
#
# Set BOOTBUS_SOURCE to the directory holding the bootbus package when it
# is not installed for /usr/bin/python3 (e.g. a source checkout).

# called by dracut
check() {
    require_binaries /usr/bin/python3 || return 1
    # Only when asked for (--add bootbus or add_dracutmodules+=" bootbus ").
    return 255
}

# called by dracut
depends() {
    # The shutdown module makes /run/initramfs/shutdown, where the bus ends.
    echo shutdown
    return 0
}

bootbus_list() {
    (
        [[ $BOOTBUS_SOURCE ]] && export PYTHONPATH="$BOOTBUS_SOURCE${PYTHONPATH:+:$PYTHONPATH}"
        cd / && /usr/bin/python3 -m bootbus.initramfs list
    )
}

# called by dracut
install() {
    local _list _src _dst _pkg _unitdir
    if ! _list=$(bootbus_list); then
        dfatal "bootbus: python3 -m bootbus.initramfs list failed (is bootbus importable? BOOTBUS_SOURCE=$BOOTBUS_SOURCE)"
        return 1
    fi
    while IFS=$'\t' read -r _src _dst; do
        [[ $_src ]] || continue
        inst_simple "$_src" "${_dst:-$_src}" || {
            dfatal "bootbus: cannot install $_src"
            return 1
        }
        [[ $_dst == */bootbus/__init__.py ]] && _pkg=${_dst%/__init__.py}
    done <<< "$_list"
    # Compiled once here, so every start in the initramfs skips compiling;
    # hash-checked bytecode stays valid whatever the file times become.
    if [[ $_pkg ]]; then
        /usr/bin/python3 -m compileall -q -d "$_pkg" \
            --invalidation-mode unchecked-hash "${initdir}${_pkg}" > /dev/null \
            || dwarn "bootbus: could not precompile $_pkg"
    fi

    inst_script "$moddir/bootbusctl.sh" /usr/bin/bootbusctl
    inst_script "$moddir/bootbus-rootwait.sh" /usr/bin/bootbus-rootwait
    inst_multiple mkdir touch setsid
    inst_hook pre-pivot 90 "$moddir/bootbus-pre-pivot.sh"
    inst_hook shutdown 50 "$moddir/bootbus-shutdown.sh"

    if dracut_module_included "systemd"; then
        _unitdir=${systemdsystemunitdir:-/usr/lib/systemd/system}
        inst_simple "$moddir/bootbus-initrd.service" "$_unitdir/bootbus-initrd.service"
        mkdir -p "${initdir}${_unitdir}/sysinit.target.wants"
        ln_r "$_unitdir/bootbus-initrd.service" \
            "$_unitdir/sysinit.target.wants/bootbus-initrd.service"
        inst_simple "$moddir/bootbus-rootwait.service" "$_unitdir/bootbus-rootwait.service"
        mkdir -p "${initdir}${_unitdir}/initrd-root-device.target.wants"
        ln_r "$_unitdir/bootbus-rootwait.service" \
            "$_unitdir/initrd-root-device.target.wants/bootbus-rootwait.service"
    else
        inst_hook pre-udev 00 "$moddir/bootbus-start.sh"
        # 00- sorts before dracut's own devexists-* hooks
        inst_hook initqueue/finished 00 "$moddir/bootbus-rootwait-hook.sh"
    fi
}
