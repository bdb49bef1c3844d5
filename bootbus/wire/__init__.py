"""The D-Bus wire protocol, without any I/O.

Owns: type signatures, marshalling in both byte orders, message headers, the
incremental framer that turns bytes + fds into messages, the SASL server and
the address syntax. Never touches a socket, a file or a clock.
"""
