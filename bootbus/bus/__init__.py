"""The bus itself, without any I/O.

Owns: peers and their unique names, well-known names and their queues, match
rules, expected replies, routing and the org.freedesktop.DBus driver. All
state is plain data owned by one :class:`bootbus.bus.router.Bus` object so a
snapshot can carry it whole. Never touches a socket, a file or a clock.
"""
