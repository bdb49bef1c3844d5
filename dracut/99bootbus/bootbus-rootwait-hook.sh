#!/bin/sh
# initqueue/finished hook of dracut's shell init, sorted before dracut's own
# (devexists-*): the first time round the main loop, wait for the root device
# through the bus instead of the loop's polling. Always true: dracut's own
# finished hooks still decide when the root device is there.
[ -e /run/bootbus/rootwait ] || bootbus-rootwait
true
