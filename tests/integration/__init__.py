"""Integration ring: real daemons on temporary sockets, driven by real clients.

Every test runs against each bus named in $BOOTBUS_TEST_BUSES (default: bootbus
and the reference dbus-daemon), so a difference from the reference shows up as
a failure, or as an explicit branch on the bus kind that says why.
"""
