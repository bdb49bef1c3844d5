"""Re-executing bootbus with its state: live upgrades and root pivots.

Owns: the memfd that carries a snapshot across exec, the inheritable flags of
exactly the fds the snapshot lists, the preflight that proves the target code
imports and reads this snapshot version before anything is torn down, and the
pivot into a new root (fchdir to an O_PATH fd opened before the switch, then
chroot "."). On any failure before exec succeeds, the running image's fds,
root and working directory are as they were and the caller keeps serving.
Never touches the bus's state: the supervisor hands it the snapshot's bytes.
"""

from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import stat
import struct
import sys
from collections.abc import Sequence

import bootbus

from ..state.snapshot import VERSION, Restored, SnapshotError

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import NoReturn

LISTENERS_ENV = "BOOTBUS_LISTENERS"  # [[fd, address, path], ...]: kept even if a restore fails
# Extra places to find the package in a new root; the dracut module installs it
# into python3's own dist-packages, which needs no entry here.
INSTALL_DIRS = ("/usr/lib/bootbus",)
ARGV0_ENV = "BOOTBUS_ARGV0"  # overrides argv[0] of every re-exec
# The restored image starts with -c rather than -m bootbus: runpy and
# importlib.util cost ~3.5 ms of the re-exec pause and do nothing for us.
DAEMON_MAIN = "import sys; from bootbus.daemon import main; sys.exit(main())"
PREFLIGHT_EXEC_FAILED = 127  # the preflight child's exit status when exec itself failed


def interpreter() -> str:
    """The running interpreter (sys.executable is empty when argv[0] starts with '@')."""
    return sys.executable or os.readlink("/proc/self/exe")


def package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(bootbus.__file__)))


def argv0(initramfs: bool = False) -> str:
    """'@bootbus' where systemd must spare us (initramfs, or started that way).

    ``initramfs`` is the caller's phase: by the time a pivot out of the
    initramfs starts, switch_root may have deleted /etc/initrd-release.
    """
    forced = os.environ.get(ARGV0_ENV)
    if forced:
        return forced  # set by whoever started us (a test proving '@' is needed)
    try:
        with open("/proc/self/cmdline", "rb") as f:
            current = f.read().split(b"\0", 1)[0]
    except OSError:
        current = b""
    if initramfs or current.startswith(b"@") or os.path.exists("/etc/initrd-release"):
        return "@bootbus"
    return "bootbus"


class ExecPlan:
    def __init__(self, interpreter: str, argv: list[str], env: dict[str, str],
                 root_fd: int | None = None) -> None:
        self.interpreter = interpreter
        self.argv = argv
        self.env = env
        self.root_fd = root_fd  # pivot into this directory (O_PATH fd) before exec


def plan(restore_fd: int, daemon_args: Sequence[str], listeners: list[tuple[int, str, str | None]],
         root_fd: int | None = None, initramfs: bool = False) -> ExecPlan:
    import json  # not on a cold start's path; loaded with the deferred imports

    env = dict(os.environ)
    env[LISTENERS_ENV] = json.dumps([list(x) for x in listeners])
    pkg = package_root()
    if root_fd is None:
        env["PYTHONPATH"] = _prepend(pkg, env.get("PYTHONPATH"))
        python = interpreter()
    else:
        python = "/usr/bin/python3"
        paths = [p for p in dict.fromkeys((pkg, *INSTALL_DIRS)) if _exists_under(root_fd, p)]
        if paths:
            env["PYTHONPATH"] = ":".join(paths)
        else:
            env.pop("PYTHONPATH", None)
    argv = [argv0(initramfs), "-c", DAEMON_MAIN, *daemon_args, "--restore-fd", str(restore_fd)]
    if argv[0].startswith("@"):
        env["PYTHONEXECUTABLE"] = python  # argv[0] no longer names it: keep sys.executable
    return ExecPlan(python, argv, env, root_fd)


def _prepend(path: str, existing: str | None) -> str:
    parts = [p for p in (existing or "").split(":") if p and p != path]
    return ":".join([path, *parts])


def _exists_under(root_fd: int, path: str) -> bool:
    try:
        os.stat(os.path.join(path.lstrip("/"), "bootbus", "__main__.py"), dir_fd=root_fd)
        return True
    except OSError:
        return False


def preflight_argv(target: ExecPlan) -> list[str]:
    """The exec's own command line, asking: does it import, and read our format?"""
    version = f"{VERSION[0]}.{VERSION[1]}"
    return [target.argv[0], "-c", DAEMON_MAIN, "--preflight", version]


class Preflight:
    def __init__(self, pid: int, output_fd: int) -> None:
        self.pid = pid
        self.output_fd = output_fd  # non-blocking read end of the child's stdout and stderr


def start_preflight(target: ExecPlan) -> Preflight:
    """Run the preflight in the target's root, as the exec will run; raises OSError.

    fork and exec by hand rather than with subprocess: the module costs ~2 ms
    of every restore, and an image left in a deleted initramfs must not need
    a lazy import to leave it. stdin is an empty pipe, so the new root needs
    no /dev/null.
    """
    argv = preflight_argv(target)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    os.close(in_w)
    try:
        pid = os.fork()
    except OSError:
        for fd in (out_r, out_w, in_r):
            os.close(fd)
        raise
    if pid == 0:
        _preflight_child(target, argv, in_r, out_w)
    os.close(in_r)
    os.close(out_w)
    os.set_blocking(out_r, False)
    return Preflight(pid, out_r)


def _preflight_child(target: ExecPlan, argv: list[str], stdin: int, out: int) -> NoReturn:
    try:
        if target.root_fd is not None:
            os.fchdir(target.root_fd)
            os.chroot(".")
            os.chdir("/")
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.execve(target.interpreter, argv, target.env)
    except BaseException as exc:  # noqa: BLE001 - the parent reads this and the status
        try:
            os.write(2, f"cannot run {target.interpreter}: {exc}\n".encode())
        finally:
            os._exit(PREFLIGHT_EXEC_FAILED)
    os._exit(PREFLIGHT_EXEC_FAILED)  # not reached: execve returned without raising


def end_preflight(preflight: Preflight, kill: bool = False) -> int:
    """Reap the preflight (killing it first if asked); return its exit status."""
    os.close(preflight.output_fd)
    if kill:
        try:
            os.kill(preflight.pid, 9)
        except ProcessLookupError:
            pass
    _pid, status = os.waitpid(preflight.pid, 0)
    return os.waitstatus_to_exitcode(status)


def write_memfd(data: bytes) -> int:
    fd = os.memfd_create("bootbus-state", 0)  # no CLOEXEC: it is meant to cross exec
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_fd(fd: int) -> bytes:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def check_inherited(restored: Restored) -> None:
    """Refuse a snapshot whose fds this process did not inherit, before adopting any.

    Every fd of the table must be open; every connection and listener must
    be a Unix stream socket (an fd number reused by something else is not).
    """
    for fd in restored.fds:
        try:
            os.fstat(fd)
        except OSError as exc:
            raise SnapshotError(f"snapshot fd {fd} was not inherited: {exc.strerror}") from None
    sockets = [*restored.conn_fds.values(), *(lst.fd for lst in restored.listeners)]
    for fd in sockets:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise SnapshotError(f"snapshot fd {fd} should be a socket and is not")
        sock = socket.socket(fileno=fd)
        try:
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise SnapshotError(f"snapshot fd {fd} is not a Unix stream socket")
        finally:
            sock.detach()


def execute(target: ExecPlan, keep_fds: list[int]) -> OSError:
    """exec the plan; returns only on failure, with everything as it was.

    "Everything": the inheritable flags of ``keep_fds``, and for a pivot the
    root and the working directory (the chroot is undone through fds of both
    opened before it).
    """
    changed = [fd for fd in keep_fds if not os.get_inheritable(fd)]
    for fd in changed:
        os.set_inheritable(fd, True)
    old_root: int | None = None
    old_cwd: int | None = None
    try:
        if target.root_fd is not None:
            old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            old_cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            os.fchdir(target.root_fd)
            os.chroot(".")
            os.chdir("/")
        os.execve(target.interpreter, target.argv, target.env)
    except OSError as exc:
        error = exc
    try:
        if old_root is not None:
            os.fchdir(old_root)
            os.chroot(".")
        if old_cwd is not None:
            os.fchdir(old_cwd)
    finally:
        for opened in (old_root, old_cwd):
            if opened is not None:
                os.close(opened)
        for fd in changed:
            os.set_inheritable(fd, False)
    return error


# -- the twin handover: the bus serves while the new image imports -----------------
#
# A plain re-exec pauses every client for the new image's start: the interpreter,
# ~50 ms of imports, then the restore. With a twin, the running image forks just
# before its exec: the parent (the bus's PID) execs the new code, the child (the
# twin) keeps serving from memory. Once the new image has imported everything it
# writes one byte on the handover socket; the twin then stops, snapshots the bus
# as it is at that moment, sends the snapshot (in a memfd) and every fd it lists,
# and exits. Clients see only snapshot, transfer and restore.
#
# The twin starts serving only once the exec succeeded (an O_CLOEXEC pipe closes
# then), so a failed exec leaves the parent serving with nothing changed. The
# parent is a child subreaper: services the twin spawned become its children.

HANDOVER_CAPABILITY = "handover: twin"  # the preflight prints this when it can take one
HANDOVER_GO = b"G"
HANDOVER_TIMEOUT = 10.0  # seconds the new image waits for the twin's state
FDS_PER_HANDOVER_MESSAGE = 250  # below the kernel's SCM_MAX_FD (253)
_HANDOVER_HEADER = "=IQ"  # fds in all, snapshot bytes (the memfd comes first)
PR_SET_CHILD_SUBREAPER = 36
TWIN_PID_ENV = "BOOTBUS_TWIN_PID"  # the new image's way to know (and reap) its twin


class HandoverError(Exception):
    pass


class Twin:
    """The twin's side of a handover: the socket to the new image."""

    def __init__(self, sock: socket.socket, parent: int) -> None:
        self.sock = sock
        self.parent = parent  # the bus's PID, now running the new image


def become_subreaper() -> bool:
    """Services a twin spawned must end up our children (kept across exec)."""
    try:
        # loaded by bootbus.io.memory.tune_malloc once the bus served; an ImportError
        # only if the root was switched before that (its files are gone)
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (ImportError, OSError, AttributeError):
        return False


def exec_with_twin(target: ExecPlan, keep_fds: list[int]) -> Twin | OSError:
    """Fork a twin, then exec ``target`` in this process.

    Returns in the twin only (a Twin, once the exec succeeded), or in this
    process only when the exec failed (the OSError; the twin is gone by then).
    ``target.argv`` must carry ``--handover-fd`` followed by a placeholder.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    target.argv[target.argv.index("--handover-fd") + 1] = str(theirs.fileno())
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (status_r, status_w):
            os.close(fd)
        ours.close()
        theirs.close()
        return exc
    if pid == 0:
        os.close(status_w)
        theirs.close()
        failed = _read_all(status_r)
        os.close(status_r)
        if failed:
            ours.close()
            os._exit(0)  # the exec failed: the parent serves on, as it was
        ours.setblocking(True)
        return Twin(ours, parent)
    os.close(status_r)
    ours.close()
    target.env[TWIN_PID_ENV] = str(pid)
    error = execute(target, [*keep_fds, theirs.fileno()])
    try:
        os.write(status_w, str(error).encode() or b"!")
    finally:
        os.close(status_w)
        theirs.close()
        os.waitpid(pid, 0)
    return error


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def hand_over(twin: Twin, data: bytes, fds: list[int]) -> None:
    """The twin's last act: the snapshot and its fds, in the snapshot's table order."""
    memfd = write_memfd(data)
    try:
        header = struct.pack(_HANDOVER_HEADER, len(fds), len(data))
        twin.sock.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", [memfd]))])
        for start in range(0, len(fds), FDS_PER_HANDOVER_MESSAGE):
            batch = array.array("i", fds[start:start + FDS_PER_HANDOVER_MESSAGE])
            twin.sock.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, batch)])
    finally:
        os.close(memfd)


def take_over(fd: int, timeout: float = HANDOVER_TIMEOUT) -> tuple[bytes, list[int], int]:
    """The new image: ask the twin for the bus; return the snapshot, its fds, the twin's pid.

    Raises HandoverError (the twin is killed then, so that nobody serves twice).
    """
    sock = socket.socket(fileno=fd)
    sock.settimeout(timeout)
    # not SO_PEERCRED: both ends of a socketpair carry its creator's pid
    twin_pid = int(os.environ.pop(TWIN_PID_ENV, "0") or 0)
    try:
        if twin_pid <= 0:
            raise HandoverError(f"{TWIN_PID_ENV} does not name the twin")
        sock.sendall(HANDOVER_GO)
        header, memfds = _recv_fds(sock, struct.calcsize(_HANDOVER_HEADER), 1)
        count, size = struct.unpack(_HANDOVER_HEADER, header)
        if len(memfds) != 1:
            raise HandoverError("the twin sent no snapshot")
        data = read_fd(memfds[0])
        if len(data) != size:
            raise HandoverError(f"the snapshot is {len(data)} bytes, the twin said {size}")
        fds: list[int] = []
        while len(fds) < count:
            _marker, batch = _recv_fds(sock, 1, FDS_PER_HANDOVER_MESSAGE)
            if not batch:
                raise HandoverError(f"the twin sent {len(fds)} of {count} fds")
            fds.extend(batch)
    except (OSError, struct.error, HandoverError) as exc:
        if twin_pid > 0:
            with contextlib.suppress(OSError):
                os.kill(twin_pid, signal.SIGKILL)
                os.waitpid(twin_pid, 0)
        raise HandoverError(f"handover from the twin failed: {exc}") from None
    finally:
        sock.close()
    os.waitpid(twin_pid, 0)  # it exits right after the last fd
    return data, fds, twin_pid


def _recv_fds(sock: socket.socket, size: int, most: int) -> tuple[bytes, list[int]]:
    data, ancdata, flags, _addr = sock.recvmsg(size, socket.CMSG_SPACE(most * 4),
                                               socket.MSG_CMSG_CLOEXEC)
    if not data:
        raise HandoverError("the twin closed the handover socket")
    if flags & socket.MSG_CTRUNC:
        raise HandoverError("too many fds in one handover message")
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)
