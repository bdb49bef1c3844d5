"""bootbus: a D-Bus compatible message bus that lives from the initramfs to poweroff.

The package is layered; imports only go down this list:

    plain  equality and repr for record classes (no dataclasses: import cost)
    wire   pure D-Bus wire protocol (signatures, marshalling, framing, SASL)
    bus    pure bus logic (peers, names, match rules, routing, the driver)
    state  snapshots of the bus for re-exec
    io     sockets, the event loop, journald, sd_notify, udev
    daemon process wiring (config, loop, signals)
    ctl    bootbusctl, the inspection tool
"""

__version__ = "0.1.0"
