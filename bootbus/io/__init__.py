"""The shell around the pure layers: sockets, the event loop and the outside world.

Owns every system call bootbus makes: listening and accepted sockets,
SCM_RIGHTS, epoll, signals, journald, sd_notify, udev, re-exec and root pivots.
"""
