"""The bootbus daemon: flags to a config, then the loop, with signals handled.

Owns: the command line of ``bootbus`` / ``python3 -m bootbus`` (argparse, not
click: the daemon runs in the initramfs, where every imported module costs
start-up time and image size), the runtime directory, the bus id and machine
id, and the signal handlers (installed in a context manager).
"""

import argparse
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from .bus import driver
from .bus.router import Bus
from .io.listen import Listener, from_systemd, listen_all
from .io.server import Server
from .wire.errors import AddressError

MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def default_runtime_dir() -> str:
    if os.geteuid() == 0:
        return "/run/bootbus"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/bootbus-{os.geteuid()}"
    return os.path.join(base, "bootbus")


@dataclass
class Config:
    address: str | None
    runtime_dir: str
    print_address: bool = False

    @property
    def listen_address(self) -> str:
        return self.address or f"unix:path={self.runtime_dir}/bus"


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="bootbus", description="A D-Bus compatible bus from the initramfs to poweroff.")
    parser.add_argument("--address", help="D-Bus address(es) to listen on, ';'-separated "
                        "(default: unix:path=RUNTIME_DIR/bus, or sockets from systemd)")
    parser.add_argument("--runtime-dir", default=None,
                        help="where bootbus keeps its files (default /run/bootbus as root)")
    parser.add_argument("--print-address", action="store_true",
                        help="print the address clients should use once listening")
    ns = parser.parse_args(argv)
    return Config(address=ns.address, runtime_dir=ns.runtime_dir or default_runtime_dir(),
                  print_address=ns.print_address)


def read_machine_id() -> str:
    for path in MACHINE_ID_PATHS:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if len(value) == 32:
            return value
    return ""


@contextlib.contextmanager
def signals_stop(server: Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop the loop; the previous handlers come back after."""
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def on_wakeup(_events: int) -> None:
        try:
            data = os.read(rfd, 64)
        except BlockingIOError:
            return
        if {signal.SIGTERM, signal.SIGINT} & set(data):
            server.stop()

    previous = {sig: signal.signal(sig, lambda *_: None)
                for sig in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    server.add_fd(rfd, on_wakeup)
    try:
        yield
    finally:
        server.remove_fd(rfd)
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(rfd)
        os.close(wfd)


def make_bus() -> Bus:
    bus = Bus(bus_id=uuid.uuid4().hex, uid=os.geteuid(), pid=os.getpid(),
              machine_id=read_machine_id())
    bus.driver = driver.handle
    return bus


def run(config: Config) -> int:
    os.makedirs(config.runtime_dir, mode=0o755, exist_ok=True)
    listeners: list[Listener] = [] if config.address else from_systemd()
    if not listeners:
        try:
            listeners = listen_all(config.listen_address)
        except (AddressError, OSError) as exc:
            print(f"bootbus: cannot listen on {config.listen_address}: {exc}", file=sys.stderr)
            return 1
    bus = make_bus()
    server = Server(bus, listeners)
    address = ";".join(f"{lst.address},guid={bus.bus_id}" for lst in listeners)
    if config.print_address:
        print(address, flush=True)
    try:
        with signals_stop(server):
            server.run()
    finally:
        server.close()
        for lst in listeners:
            if lst.path:
                with contextlib.suppress(OSError):
                    os.unlink(lst.path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
