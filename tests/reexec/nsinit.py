"""PID 1 of a private mount and PID namespace: an initramfs, a switch_root, a shutdown.

    unshare --mount --pid --fork --kill-child /usr/bin/python3 nsinit.py REPO WORK SCENARIO

Run by tests/reexec/test_namespaces.py, never by hand. It plays the boot
the way dracut does, with bootbus as the bus from first to last:

  1. mounts an initramfs root (tmpfs: /usr a read-only overlay of the host's
     /usr with bootbus in /usr/lib/bootbus, /etc/initrd-release, /dev, /proc,
     and /run on a tmpfs of its own) and a real root at /sysroot (tmpfs, the
     same /usr with its own copy of bootbus), then chroots into the initramfs
     as its kernel-made rootfs would be;
  2. starts bootbus there (pivots are asked for with bootbusctl, run from the
     current root as dracut's hooks and the units do) and connects a service (a well-known name, a match
     rule), a caller and an emitter; leaves a call to the service unanswered
     and broadcasts numbered ticks;
  3. switches root as SCENARIO says:
       busybox           pivot prepared; move /run, /proc, /dev; delete the
                         initramfs (its /usr goes with it); move /sysroot
                         onto /; chroot; the bus follows PID 1 by itself
       busybox-unprepared  the same with no pivot prepared: the bus finds the
                         new root through /proc/1/root
       systemd-explicit  pivot prepared; move the API mounts; move /sysroot
                         onto /; chroot; delete the old root; then complete
                         the pivot with `bootbusctl pivot`, as bootbus-pivot.service
       systemd-auto      the same, but nobody completes it: the bus notices
                         that PID 1's root changed;
  4. moves the bus into /run/initramfs, as at shutdown, and then unmounts the
     real root's /usr, which fails if anything still maps or holds it.

After each pivot it records what the test asserts: the bus's status, id and
names; the unanswered call answered across it; every tick received in order;
and every mount the daemon references through /proc/PID/{root,cwd,exe},
map_files and fdinfo, to compare with the mounts of the root it left.

It prints one JSON object (the facts, or "error" with a traceback) and
exits; the namespace and everything in it die with it. Every wait has a
timeout.
"""

import ctypes
import json
import os
import subprocess
import sys
import time
import traceback
from typing import Any

REPO, WORK, SCENARIO = sys.argv[1:4]
sys.path.insert(0, REPO)

from bootbus.client import Client
from bootbus.wire import message as m

ADDRESS = "unix:path=/run/bootbus/bus"
SERVICE = "org.bootbus.ns.Service"
TICK_IFACE = "org.bootbus.ns.Tick"
SUPERVISOR = ("org.bootbus", "/org/bootbus/Supervisor1", "org.bootbus.Supervisor1")
DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
CALL_TIMEOUT_S = 30.0
PIVOT_TIMEOUT_S = 30.0
TICKS_PER_STEP = 5
TICK_INTERVAL_S = 0.01  # ticks keep coming while a pivot happens
MS_MOVE, MS_BIND, MS_RDONLY, MNT_DETACH = 8192, 4096, 1, 2
_libc = ctypes.CDLL(None, use_errno=True)


# -- mounts, by syscall: /proc moves away during switch_root, and util-linux needs it ----


def mount(source: str, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                   flags, data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} {target} ({fstype}): {os.strerror(errno)}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"umount {target}: {os.strerror(errno)}")


def populate_root(root: str, layer: str, initrd: bool) -> None:
    """A root as dracut or debootstrap would leave it, /usr read-only with bootbus in it."""
    for name in ("usr", "etc", "proc", "dev", "run", "sys", "tmp", "sysroot", "oldroot"):
        os.makedirs(f"{root}/{name}", exist_ok=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        os.symlink(f"usr/{name}", f"{root}/{name}")
    mount("overlay", f"{root}/usr", "overlay", MS_RDONLY, f"lowerdir={layer}:/usr")
    if initrd:
        with open(f"{root}/etc/initrd-release", "w") as f:
            f.write('NAME="bootbus test initramfs"\n')


def mnt_id(path: str) -> int:
    fd = os.open(path, os.O_PATH)
    try:
        return fdinfo_mnt_id(f"/proc/self/fdinfo/{fd}")
    finally:
        os.close(fd)


def fdinfo_mnt_id(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise RuntimeError(f"no mnt_id in {path}")


def daemon_mounts(pid: int) -> dict[str, int]:
    """Every mount the process references: root, cwd, exe, mapped files, fds."""
    refs = {kind: mnt_id(f"/proc/{pid}/{kind}") for kind in ("root", "cwd", "exe")}
    for name in os.listdir(f"/proc/{pid}/map_files"):
        try:
            refs[f"map {name}"] = mnt_id(f"/proc/{pid}/map_files/{name}")
        except FileNotFoundError:
            continue  # unmapped meanwhile
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            refs[f"fd {name} {os.readlink(f'/proc/{pid}/fd/{name}')}"] = fdinfo_mnt_id(
                f"/proc/{pid}/fdinfo/{name}")
        except FileNotFoundError:
            continue
    return refs


def old_root_refs(pid: int, old_root: set[int],
                  refs: dict[str, int] | None = None) -> dict[str, int]:
    """What of the daemon refers to a mount of ``old_root``: root, cwd, exe, maps, fds."""
    refs = daemon_mounts(pid) if refs is None else refs
    return {what: mid for what, mid in refs.items() if mid in old_root}


def same_file(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def delete_same_fs(top: str) -> int:
    """rm -rf of one filesystem below ``top``, sparing mount points (switch_root's way)."""
    dev = os.stat(top).st_dev  # follows /proc/self/fd/N to the directory
    removed = 0
    for entry in os.scandir(top):
        st = entry.stat(follow_symlinks=False)
        if st.st_dev != dev:
            continue  # a mount point: not ours to delete
        if entry.is_dir(follow_symlinks=False):
            removed += delete_same_fs(entry.path)
            try:
                os.rmdir(entry.path)
            except OSError:
                continue  # a directory holding a mount point
        else:
            os.unlink(entry.path)
        removed += 1
    return removed


# -- the peers ---------------------------------------------------------------------


class Peers:
    def __init__(self) -> None:
        self.service = Client(ADDRESS, timeout=CALL_TIMEOUT_S)
        self.service.call(*DBUS, "RequestName", "su", (SERVICE, 4))
        self.service.add_match(f"type='signal',interface='{TICK_IFACE}'")
        self.caller = Client(ADDRESS, timeout=CALL_TIMEOUT_S)
        self.emitter = Client(ADDRESS, timeout=CALL_TIMEOUT_S)
        self.control = Client(ADDRESS, timeout=CALL_TIMEOUT_S)
        self.ticks_sent = 0
        self.ticks_seen: list[int] = []
        self.held: list[m.Message] = []  # calls the service has not answered yet
        self.calls: dict[int, int] = {}  # caller's serial -> work number

    def names(self) -> dict[str, str]:
        return {role: getattr(self, role).unique_name
                for role in ("service", "caller", "emitter", "control")}

    def tick(self) -> None:
        self.ticks_sent += 1
        self.emitter.send(m.build(m.SIGNAL, self.emitter.next_serial(), path="/org/bootbus/ns",
                                  interface=TICK_IFACE, member="Tick", signature="u",
                                  args=(self.ticks_sent,)))

    def call_service(self, work: int) -> None:
        serial = self.caller.call_async(SERVICE, "/org/bootbus/ns", SERVICE, "Work", "u", (work,))
        self.calls[serial] = work

    def drain_service(self, calls: int) -> None:
        """Read the service's queue until every tick sent and ``calls`` more calls arrived."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        wanted = len(self.held) + calls
        while len(self.ticks_seen) < self.ticks_sent or len(self.held) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"service saw {len(self.ticks_seen)}/{self.ticks_sent} "
                                   f"ticks, {len(self.held)}/{wanted} calls")
            self.service._read(deadline)  # the small client has no poll
            while self.service.queue:
                msg = self.service.queue.pop(0)
                if msg.type == m.SIGNAL and msg.interface == TICK_IFACE:
                    self.ticks_seen.append(msg.args()[0])
                elif msg.type == m.METHOD_CALL and msg.member == "Work":
                    self.held.append(msg)

    def answer_held(self) -> list[int]:
        """The service answers every call it holds; return the works the caller got back."""
        for call in self.held:
            self.service.send(m.build(m.METHOD_RETURN, self.service.next_serial(),
                                      reply_serial=call.serial, destination=call.sender,
                                      signature="u", args=call.args()))
        answered = []
        for call in self.held:
            reply = self.caller.wait_reply(call.serial, timeout=CALL_TIMEOUT_S)
            if reply.type != m.METHOD_RETURN:
                raise RuntimeError(f"call {call.serial} answered with {reply.error_name}")
            answered.append(reply.args()[0])
        self.held = []
        return answered


# -- the boot ------------------------------------------------------------------------


def bootbusctl(*args: str) -> str:
    """bootbusctl as the hooks and units run it, from the current root's /usr/lib/bootbus."""
    proc = subprocess.run(["/usr/bin/python3", "-m", "bootbus.ctl", "--address", ADDRESS, *args],
                          env={"PYTHONPATH": "/usr/lib/bootbus", "PATH": "/usr/bin"},
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=PIVOT_TIMEOUT_S,
                          check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"bootbusctl {' '.join(args)} failed ({proc.returncode}): {out}")
    return out


def status(peers: Peers) -> dict[str, Any]:
    (raw,) = peers.control.call(*SUPERVISOR, "GetStatus", timeout=CALL_TIMEOUT_S)
    return {key: value[1] for key, value in raw.items()}


def start_daemon() -> subprocess.Popen[bytes]:
    os.makedirs("/run/bootbus-test", exist_ok=True)
    log = os.open("/run/bootbus-test/daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    daemon = subprocess.Popen(
        ["/usr/bin/python3", "-m", "bootbus", "--address", ADDRESS, "--runtime-dir",
         "/run/bootbus", "--print-address"],
        env={"PYTHONPATH": "/usr/lib/bootbus", "PATH": "/usr/bin"}, cwd="/",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    os.close(log)
    assert daemon.stdout is not None
    if not daemon.stdout.readline().startswith(ADDRESS.encode()):
        raise RuntimeError(f"bootbus did not start: {read_log()}")
    return daemon


def read_log() -> str:
    try:
        with open("/run/bootbus-test/daemon.log", errors="replace") as f:
            return f.read()
    except OSError as exc:
        return f"<no log: {exc}>"


def move_api_mounts(newroot: str) -> None:
    for name in ("dev", "proc", "run"):
        mount(f"/{name}", f"{newroot}/{name}", flags=MS_MOVE)


def switch_busybox(peers: Peers, facts: dict[str, Any]) -> None:
    """util-linux/busybox switch_root as dracut's shell init runs it."""
    move_api_mounts("/sysroot")
    peers.tick()
    facts["deleted_files"] = delete_same_fs("/")
    # /usr was part of the initramfs: it is gone for anyone still rooted there
    umount("/usr", MNT_DETACH)
    os.chdir("/sysroot")
    mount(".", "/", flags=MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def switch_systemd(peers: Peers, facts: dict[str, Any]) -> None:
    """systemd's switch_root: move the API mounts and the root, chroot, then clean up."""
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY)
    old_usr = os.open("/usr", os.O_PATH | os.O_DIRECTORY)
    move_api_mounts("/sysroot")
    os.chdir("/sysroot")
    mount(".", "/", flags=MS_MOVE)
    os.chroot(".")
    os.chdir("/")
    peers.tick()
    facts["deleted_files"] = delete_same_fs(f"/proc/self/fd/{old_root}")
    umount(f"/proc/self/fd/{old_usr}", MNT_DETACH)
    os.close(old_usr)
    os.close(old_root)


def wait_generation(peers: Peers, generation: int) -> None:
    """Keep ticking while the bus re-executes by itself; return once it serves again."""
    deadline = time.monotonic() + PIVOT_TIMEOUT_S
    while status(peers)["Generation"] < generation:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bus did not reach generation {generation}: {read_log()}")
        peers.tick()
        time.sleep(TICK_INTERVAL_S)


def after_pivot(peers: Peers, daemon: subprocess.Popen[bytes], old_root: set[int],
                new_root: str, work_from: int) -> dict[str, Any]:
    """What the test asserts after a pivot."""
    refs = daemon_mounts(daemon.pid)
    with open(f"/proc/{daemon.pid}/cmdline", "rb") as f:
        argv0 = f.read().split(b"\0")[0].decode()
    fact: dict[str, Any] = {
        "status": status(peers),
        "bus_id": peers.control.call(*DBUS, "GetId")[0],
        "names": peers.control.call(*DBUS, "ListNames")[0],
        "service_owner": peers.control.call(*DBUS, "GetNameOwner", "s", (SERVICE,))[0],
        "old_root_refs": old_root_refs(daemon.pid, old_root, refs),
        "root_is_new_root": same_file(f"/proc/{daemon.pid}/root", new_root)
        and refs["root"] == mnt_id(new_root),
        "exe_from_new_usr": refs["exe"] == mnt_id(f"{new_root}/usr".replace("//", "/")),
        "cwd_is_new_root": same_file(f"/proc/{daemon.pid}/cwd", new_root),
        "argv0": argv0,
        "daemon_pid": daemon.pid,
        "daemon_alive": daemon.poll() is None,
    }
    for _ in range(TICKS_PER_STEP):
        peers.tick()
    peers.call_service(work_from + 1)  # a call made after the pivot
    peers.drain_service(1)
    fact["answered"] = peers.answer_held()
    with Client(ADDRESS, timeout=CALL_TIMEOUT_S) as fresh:  # new clients find it in this root
        fact["fresh_sees_service"] = fresh.call(*DBUS, "GetNameOwner", "s", (SERVICE,))[0]
    return fact


def scenario() -> dict[str, Any]:
    facts: dict[str, Any] = {"scenario": SCENARIO}
    initrd = f"{WORK}/initrd"
    mount("tmpfs", initrd, "tmpfs", 0, "mode=0755")
    populate_root(initrd, f"{WORK}/layers/initrd", initrd=True)
    mount("tmpfs", f"{initrd}/dev", "tmpfs", 0, "mode=0755")
    open(f"{initrd}/dev/null", "w").close()
    mount("/dev/null", f"{initrd}/dev/null", flags=MS_BIND)
    mount("proc", f"{initrd}/proc", "proc")
    mount("tmpfs", f"{initrd}/run", "tmpfs", 0, "mode=0755")
    mount("tmpfs", f"{initrd}/sysroot", "tmpfs", 0, "mode=0755")
    populate_root(f"{initrd}/sysroot", f"{WORK}/layers/root", initrd=False)
    # the shutdown initramfs is unpacked late, from outside every root: keep a way there
    layers = os.open(f"{WORK}/layers", os.O_PATH | os.O_DIRECTORY)
    os.chroot(initrd)  # the kernel's rootfs, as far as everything started below knows
    os.chdir("/")
    sys.path.append("/usr/lib/bootbus")

    daemon = start_daemon()
    peers = Peers()
    facts["before"] = {"status": status(peers), "names": peers.names(),
                       "bus_id": peers.control.call(*DBUS, "GetId")[0]}
    for _ in range(TICKS_PER_STEP):
        peers.tick()
    peers.call_service(1)  # left unanswered across the switch
    peers.drain_service(1)

    old_root = {mnt_id("/"), mnt_id("/usr")}
    facts["before"]["old_root_refs"] = old_root_refs(daemon.pid, old_root)
    if SCENARIO != "busybox-unprepared":  # dracut's pre-pivot hook
        facts["prepare"] = bootbusctl("pivot", "--prepare", "/sysroot")
    peers.call_service(2)  # in flight while the root switches
    if SCENARIO.startswith("busybox"):
        switch_busybox(peers, facts)
    else:
        switch_systemd(peers, facts)
    if SCENARIO == "systemd-explicit":  # bootbus-pivot.service completes the prepared pivot
        started = time.monotonic()
        facts["complete"] = bootbusctl("pivot")
        facts["explicit_pivot_s"] = time.monotonic() - started
    else:
        wait_generation(peers, 2)
    if SCENARIO == "systemd-auto":
        # bootbus-pivot.service, late: the bus already followed PID 1, nothing to do
        for late in ("/sysroot", ""):
            peers.control.call(*SUPERVISOR, "Pivot", "sb", (late, False),
                               timeout=PIVOT_TIMEOUT_S)
        facts["late_completion_generation"] = status(peers)["Generation"]
    peers.drain_service(1)
    facts["switch_root"] = after_pivot(peers, daemon, old_root, "/", 2)

    # shutdown: dracut-shutdown unpacked the initramfs into /run/initramfs
    os.makedirs("/run/initramfs")
    populate_root("/run/initramfs", f"/proc/self/fd/{layers}/shutdown", initrd=True)
    old_root = {mnt_id("/"), mnt_id("/usr")}
    facts["switch_root"]["refs_before_shutdown"] = old_root_refs(daemon.pid, old_root)
    peers.call_service(4)  # left unanswered across the shutdown pivot
    peers.drain_service(1)
    for _ in range(TICKS_PER_STEP):
        peers.tick()
    facts["shutdown_pivot"] = bootbusctl("pivot", "/run/initramfs")  # bootbus-shutdown.service
    facts["shutdown"] = after_pivot(peers, daemon, old_root, "/run/initramfs", 4)
    try:
        umount("/usr")  # not lazily: fails with EBUSY while anything maps python3 from it
        facts["real_usr_unmounted"] = "yes"
    except OSError as exc:
        facts["real_usr_unmounted"] = str(exc)
    facts["ticks_sent"] = peers.ticks_sent
    facts["ticks_seen"] = peers.ticks_seen
    facts["last_status"] = status(peers)
    facts["log"] = read_log()
    return facts


def main() -> None:
    try:
        facts = scenario()
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        facts = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                 "log": read_log()}
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()


main()
