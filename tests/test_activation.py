"""Bus activation against a real daemon: .service files, spawning, errors.

The daemon runs with --service-dir pointing at .service files written per
test module; the activatable service is tests/data/activation/echo_service.py,
which connects through $DBUS_STARTER_ADDRESS and owns its name. Failures are
real: a program that does not exist, one that exits before owning its name.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootbus.client import BUS, BUS_PATH, CallError, Client
from bootbus.io.activation import ServiceFileError, load_service_dirs, parse_service_file
from bootbus.wire import message as m
from daemonproc import running_daemon

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
ECHO = REPO / "tests" / "data" / "activation" / "echo_service.py"
ECHO_IFACE = "org.bootbus.test.Echo"
CALL_TIMEOUT = 15.0
LOG_WAIT = 5.0

SERVICES = {
    "org.bootbus.test.Echo": f"Exec={PYTHON} {ECHO} org.bootbus.test.Echo",
    "org.bootbus.test.Started": f"Exec={PYTHON} '{ECHO}' org.bootbus.test.Started",
    "org.bootbus.test.Missing": "Exec=/nonexistent/bootbus-test-program --flag",
    "org.bootbus.test.Exits": "Exec=/bin/sh -c 'echo giving up; exit 3'",
    "org.bootbus.test.NoAuto": f"Exec={PYTHON} {ECHO} org.bootbus.test.NoAuto",
    "org.bootbus.test.ViaSystemd": "Exec=/bin/false\nSystemdService=bbtest-echo.service",
}


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    address: str
    log: Path
    services: Path


def write_services(directory: Path) -> None:
    directory.mkdir()
    for name, exec_line in SERVICES.items():
        (directory / f"{name}.service").write_text(
            f"# written by {__name__}\n[D-BUS Service]\nName={name}\n{exec_line}\n")
    (directory / "broken.service").write_text("[D-BUS Service]\nExec=/bin/true\n")
    (directory / "ignored.txt").write_text("[D-BUS Service]\nName=org.bootbus.test.Txt\n")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("activation")
    write_services(tmp / "services")
    log = tmp / "stderr"
    with open(log, "w") as err, running_daemon(tmp, "--service-dir", str(tmp / "services"),
                                               stderr=err) as (proc, address):
        yield Daemon(proc, address, log, tmp / "services")


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


def wait_for_log(daemon: Daemon, needle: str) -> str:
    deadline = time.monotonic() + LOG_WAIT
    while time.monotonic() < deadline:
        text = daemon.log.read_text()
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the daemon's log:\n{daemon.log.read_text()}")


def error_of(client: Client, serial: int) -> tuple[str, str]:
    reply = client.wait_reply(serial, timeout=CALL_TIMEOUT)
    assert reply.type == m.ERROR, reply.args()
    return reply.error_name or "", reply.args()[0]


# -- pure ------------------------------------------------------------------------

def test_service_file_keys_come_from_the_dbus_service_group() -> None:
    service = parse_service_file(
        "[Other]\nName=wrong\n# comment\n[D-BUS Service]\nName=org.example.A\n"
        "Exec=/usr/bin/a --x 'two words'\nUser=nobody\nSystemdService=a.service\n", "a")
    assert (service.name, service.user, service.systemd_service) == (
        "org.example.A", "nobody", "a.service")
    assert service.argv() == ["/usr/bin/a", "--x", "two words"]


@pytest.mark.parametrize("text", ["[D-BUS Service]\nExec=/bin/true\n",
                                  "[D-BUS Service]\nName=org.example.A\n",
                                  "[D-BUS Service]\nName=org.example.A\nnot a key\n"])
def test_bad_service_files_are_refused(text: str) -> None:
    with pytest.raises(ServiceFileError):
        parse_service_file(text, "bad.service")


def test_first_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    for directory, program in ((first, "/bin/first"), (second, "/bin/second")):
        directory.mkdir()
        (directory / "a.service").write_text(
            f"[D-BUS Service]\nName=org.example.A\nExec={program}\n")
    logged: list[str] = []
    found = load_service_dirs([str(first), str(second), str(tmp_path / "missing")],
                              lambda _p, text, **_f: logged.append(text))
    assert found["org.example.A"].exec == "/bin/first"
    assert logged == []


# -- against the daemon ------------------------------------------------------------

def test_list_activatable_names(client: Client) -> None:
    (names,) = client.call(BUS, BUS_PATH, BUS, "ListActivatableNames")
    assert set(SERVICES) <= set(names)
    assert "org.bootbus.test.Txt" not in names  # only *.service files count
    assert BUS in names


def test_call_to_activatable_name_starts_it_and_gets_the_reply(
        daemon: Daemon, client: Client) -> None:
    name = "org.bootbus.test.Echo"
    assert client.call(BUS, BUS_PATH, BUS, "NameHasOwner", "s", (name,)) == [False]
    (echoed,) = client.call(name, "/", ECHO_IFACE, "Echo", "s", ("hello",),
                            timeout=CALL_TIMEOUT)
    assert echoed == "hello"
    bus_type, address = client.call(name, "/", ECHO_IFACE, "Starter", timeout=CALL_TIMEOUT)
    assert bus_type == "session" and address.startswith(daemon.address + ",guid=")
    assert client.call(BUS, BUS_PATH, BUS, "NameHasOwner", "s", (name,)) == [True]
    # the service's stdout went to the step log
    wait_for_log(daemon, f"echo service for {name} starting")


def test_start_service_by_name(client: Client) -> None:
    name = "org.bootbus.test.Started"
    assert client.call(BUS, BUS_PATH, BUS, "StartServiceByName", "su", (name, 0),
                       timeout=CALL_TIMEOUT) == [1]
    assert client.call(BUS, BUS_PATH, BUS, "NameHasOwner", "s", (name,)) == [True]
    assert client.call(BUS, BUS_PATH, BUS, "StartServiceByName", "su", (name, 0),
                       timeout=CALL_TIMEOUT) == [2]


def test_exec_failure_gives_spawn_exec_failed(client: Client) -> None:
    name = "org.bootbus.test.Missing"
    serial = client.call_async(name, "/", ECHO_IFACE, "Echo", "s", ("x",))
    error, text = error_of(client, serial)
    assert error == "org.freedesktop.DBus.Error.Spawn.ExecFailed"
    assert "/nonexistent/bootbus-test-program" in text
    with pytest.raises(CallError) as err:
        client.call(BUS, BUS_PATH, BUS, "StartServiceByName", "su", (name, 0),
                    timeout=CALL_TIMEOUT)
    assert err.value.name == "org.freedesktop.DBus.Error.Spawn.ExecFailed"


def test_child_exiting_before_owning_gives_child_exited(daemon: Daemon,
                                                        client: Client) -> None:
    name = "org.bootbus.test.Exits"
    first = client.call_async(name, "/", ECHO_IFACE, "Echo", "s", ("x",))
    second = client.call_async(BUS, BUS_PATH, BUS, "StartServiceByName", "su", (name, 0))
    for serial in (first, second):
        error, text = error_of(client, serial)
        assert error == "org.freedesktop.DBus.Error.Spawn.ChildExited"
        assert text == f"Process {name} exited with status 3"
    wait_for_log(daemon, "giving up")


def test_no_auto_start_does_not_start_the_service(client: Client) -> None:
    # dbus-daemon 1.14 answers a NO_AUTO_START call to an unowned activatable name
    # with NameHasNoOwner (ServiceUnknown is for names no .service file provides)
    name = "org.bootbus.test.NoAuto"
    serial = client.next_serial()
    client.send(m.build(m.METHOD_CALL, serial, path="/", interface=ECHO_IFACE, member="Echo",
                        destination=name, signature="s", args=("x",),
                        flags=m.FLAG_NO_AUTO_START))
    error, text = error_of(client, serial)
    assert (error, text) == ("org.freedesktop.DBus.Error.NameHasNoOwner",
                             f'Name "{name}" does not exist')
    time.sleep(0.3)  # a wrongly started service would own its name by now
    assert client.call(BUS, BUS_PATH, BUS, "NameHasOwner", "s", (name,)) == [False]


def test_unknown_name_is_still_service_unknown(client: Client) -> None:
    with pytest.raises(CallError) as err:
        client.call("org.bootbus.test.Nobody", "/", ECHO_IFACE, "Echo", "s", ("x",),
                    timeout=CALL_TIMEOUT)
    assert err.value.name == "org.freedesktop.DBus.Error.ServiceUnknown"


def test_a_service_file_added_later_is_found(daemon: Daemon, client: Client) -> None:
    name = "org.bootbus.test.Later"
    (daemon.services / f"{name}.service").write_text(
        f"[D-BUS Service]\nName={name}\nExec={PYTHON} {ECHO} {name}\n")
    (names,) = client.call(BUS, BUS_PATH, BUS, "ListActivatableNames")
    assert name in names
    (echoed,) = client.call(name, "/", ECHO_IFACE, "Echo", "s", ("later",),
                            timeout=CALL_TIMEOUT)
    assert echoed == "later"


def test_systemd_service_is_delegated_when_systemd_is_on_the_bus(
        daemon: Daemon, client: Client) -> None:
    """A fake systemd owns org.freedesktop.systemd1, gets ActivationRequest(unit) from
    the bus driver, and has the name owned (here by itself); the held call arrives."""
    name = "org.bootbus.test.ViaSystemd"
    with Client(daemon.address) as systemd, Client(daemon.address) as service:
        (code,) = systemd.call(BUS, BUS_PATH, BUS, "RequestName", "su",
                               ("org.freedesktop.systemd1", 4))
        assert code == 1
        serial = client.call_async(name, "/", ECHO_IFACE, "Echo", "s", ("via systemd",))
        request = next(msg for msg in systemd.messages(timeout=CALL_TIMEOUT)
                       if msg.type == m.SIGNAL and msg.member == "ActivationRequest")
        assert (request.interface, request.path, request.sender) == (
            "org.freedesktop.systemd1.Activator", BUS_PATH, BUS)
        assert request.args() == ["bbtest-echo.service"]
        assert service.call(BUS, BUS_PATH, BUS, "RequestName", "su", (name, 4)) == [1]
        call = next(msg for msg in service.messages(timeout=CALL_TIMEOUT)
                    if msg.type == m.METHOD_CALL and msg.member == "Echo")
        service.send(m.build(m.METHOD_RETURN, service.next_serial(), reply_serial=call.serial,
                             destination=call.sender, signature="s", args=tuple(call.args())))
        reply = client.wait_reply(serial, timeout=CALL_TIMEOUT)
        assert reply.type == m.METHOD_RETURN and reply.args() == ["via systemd"]
