"""Exec a command with fds moved to exact numbers, as a re-exec hands them over.

    fdexec.py '{"40": 3, "41": 4}' PROGRAM ARGS...

makes the fd passed in as 3 appear as 40 (inheritable), 4 as 41, closes
every other fd above 2, and execs PROGRAM. The snapshot tests use it to give
a restoring daemon exactly the fd numbers a committed snapshot names.
Never imports bootbus.
"""

import fcntl
import json
import os
import sys

SCRATCH_FD = 1000  # fds are parked above this while being moved, so targets never collide


def main() -> None:
    mapping = {int(target): int(source) for target, source in json.loads(sys.argv[1]).items()}
    parked = {target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, SCRATCH_FD)
              for target, source in mapping.items()}
    for source in set(mapping.values()):
        os.close(source)
    for target, fd in parked.items():
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    for fd in range(3, SCRATCH_FD):
        if fd not in mapping:
            try:
                os.close(fd)
            except OSError:
                pass
    os.execv(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
