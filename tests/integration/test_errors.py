"""Errors carry the same names on every bus.

Each case is one call and the error name dbus-daemon answers with (checked
against dbus-daemon 1.14, and against the specification where it names one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jeepney import HeaderFields, MessageType, new_error

from .buses import Bus
from .peers import DRIVER, DRIVER_PATH, Peer, Service, error_name

E = "org.freedesktop.DBus.Error."
PROPS = "org.freedesktop.DBus.Properties"

# (case id, destination, path, interface, member, signature, body, error name)
CASES: list[tuple[str, str, str, str | None, str, str | None, tuple[Any, ...], str]] = [
    ("call-missing-well-known", "com.example.Missing", "/", "com.example.X", "Y", None, (),
     E + "ServiceUnknown"),
    ("call-missing-unique", ":1.999", "/", "com.example.X", "Y", None, (), E + "ServiceUnknown"),
    ("get-name-owner-missing", DRIVER, DRIVER_PATH, DRIVER, "GetNameOwner", "s",
     ("com.example.Missing",), E + "NameHasNoOwner"),
    ("get-name-owner-missing-unique", DRIVER, DRIVER_PATH, DRIVER, "GetNameOwner", "s",
     (":1.999",), E + "NameHasNoOwner"),
    ("unix-user-missing", DRIVER, DRIVER_PATH, DRIVER, "GetConnectionUnixUser", "s",
     ("com.example.Missing",), E + "NameHasNoOwner"),
    ("unix-pid-missing", DRIVER, DRIVER_PATH, DRIVER, "GetConnectionUnixProcessID", "s",
     (":1.999",), E + "NameHasNoOwner"),
    ("credentials-missing", DRIVER, DRIVER_PATH, DRIVER, "GetConnectionCredentials", "s",
     (":1.999",), E + "NameHasNoOwner"),
    ("queued-owners-missing", DRIVER, DRIVER_PATH, DRIVER, "ListQueuedOwners", "s",
     ("com.example.Missing",), E + "NameHasNoOwner"),
    ("unknown-driver-method", DRIVER, DRIVER_PATH, DRIVER, "NoSuchMethod", None, (),
     E + "UnknownMethod"),
    ("unknown-driver-interface", DRIVER, DRIVER_PATH, "org.example.NoSuchIface", "GetId", None,
     (), E + "UnknownInterface"),
    ("bad-args-extra", DRIVER, DRIVER_PATH, DRIVER, "GetId", "s", ("x",), E + "InvalidArgs"),
    ("bad-args-missing", DRIVER, DRIVER_PATH, DRIVER, "RequestName", "s", ("com.example.A",),
     E + "InvalidArgs"),
    ("bad-args-type", DRIVER, DRIVER_PATH, DRIVER, "NameHasOwner", "u", (7,), E + "InvalidArgs"),
    ("request-unique-name", DRIVER, DRIVER_PATH, DRIVER, "RequestName", "su", (":1.5", 0),
     E + "InvalidArgs"),
    ("request-driver-name", DRIVER, DRIVER_PATH, DRIVER, "RequestName", "su", (DRIVER, 0),
     E + "InvalidArgs"),
    ("request-invalid-name", DRIVER, DRIVER_PATH, DRIVER, "RequestName", "su", ("bad..name", 0),
     E + "InvalidArgs"),
    ("release-driver-name", DRIVER, DRIVER_PATH, DRIVER, "ReleaseName", "s", (DRIVER,),
     E + "InvalidArgs"),
    ("release-invalid-name", DRIVER, DRIVER_PATH, DRIVER, "ReleaseName", "s", ("bad",),
     E + "InvalidArgs"),
    ("add-match-bad-type", DRIVER, DRIVER_PATH, DRIVER, "AddMatch", "s", ("type='bogus'",),
     E + "MatchRuleInvalid"),
    ("add-match-unknown-key", DRIVER, DRIVER_PATH, DRIVER, "AddMatch", "s", ("foo='bar'",),
     E + "MatchRuleInvalid"),
    ("add-match-unterminated", DRIVER, DRIVER_PATH, DRIVER, "AddMatch", "s", ("member='x",),
     E + "MatchRuleInvalid"),
    ("remove-match-unknown", DRIVER, DRIVER_PATH, DRIVER, "RemoveMatch", "s", ("type='signal'",),
     E + "MatchRuleNotFound"),
    ("second-hello", DRIVER, DRIVER_PATH, DRIVER, "Hello", None, (), E + "Failed"),
    ("start-missing-service", DRIVER, DRIVER_PATH, DRIVER, "StartServiceByName", "su",
     ("com.example.Missing", 0), E + "ServiceUnknown"),
    ("adt-audit-data", DRIVER, DRIVER_PATH, DRIVER, "GetAdtAuditSessionData", "s", (DRIVER,),
     E + "AdtAuditDataUnknown"),
    ("selinux-context", DRIVER, DRIVER_PATH, DRIVER, "GetConnectionSELinuxSecurityContext", "s",
     (DRIVER,), E + "SELinuxSecurityContextUnknown"),
    ("property-unknown", DRIVER, DRIVER_PATH, PROPS, "Get", "ss", (DRIVER, "Nope"),
     E + "UnknownProperty"),
    ("property-unknown-interface", DRIVER, DRIVER_PATH, PROPS, "Get", "ss",
     ("org.example.Nope", "Features"), E + "UnknownInterface"),
    ("property-set-read-only", DRIVER, DRIVER_PATH, PROPS, "Set", "ssv",
     (DRIVER, "Features", ("as", [])), E + "PropertyReadOnly"),
    ("become-monitor-flags", DRIVER, DRIVER_PATH, "org.freedesktop.DBus.Monitoring",
     "BecomeMonitor", "asu", ([], 1), E + "InvalidArgs"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_name(case: tuple[Any, ...], connect: Callable[..., Peer]) -> None:
    _id, dest, path, iface, member, sig, body, expected = case
    reply = connect().call(dest, path, iface, member, sig, body)
    assert reply.header.message_type is MessageType.error, f"got a return: {reply.body}"
    assert error_name(reply) == expected
    # Every bus error carries a human-readable message as its one string argument.
    assert reply.header.fields.get(HeaderFields.signature) == "s" and isinstance(reply.body[0], str)


def test_service_error_passes_through_unchanged(bus: Bus, connect: Callable[..., Peer]) -> None:
    def fail(msg: Any) -> Any:
        return new_error(msg, "com.example.Error.Custom", "su", ("custom failure", 17))

    with Service(bus.address, {"Fail": fail}, name="com.example.Failing") as service:
        reply = connect().call("com.example.Failing", "/x", "com.example.F", "Fail")
    assert error_name(reply) == "com.example.Error.Custom"
    assert reply.body == ("custom failure", 17)
    assert reply.header.fields[HeaderFields.sender] == service.unique_name


def test_driver_without_interface_field(connect: Callable[..., Peer], bus: Bus) -> None:
    """The spec lets a method call omit the interface; the driver then looks
    the member up in all its interfaces, as dbus-daemon does."""
    peer = connect()
    reply = peer.call(DRIVER, DRIVER_PATH, None, "GetNameOwner", "s", (DRIVER,))
    assert reply.body == (DRIVER,), error_name(reply)
    ping = peer.call(DRIVER, DRIVER_PATH, None, "Ping")
    assert ping.header.message_type is MessageType.method_return, (error_name(ping), ping.body)


def test_start_service_by_name_of_owned_name(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    peer.driver_ok("RequestName", "su", ("com.example.Running", 0))
    owned = peer.driver("StartServiceByName", "su", ("com.example.Running", 0))
    unique = peer.driver("StartServiceByName", "su", (peer.unique_name, 0))
    if bus.kind == "dbus-daemon":
        # dbus-daemon looks for a .service file before it looks at the owner,
        # so a running name without one is "unknown".
        assert error_name(owned) == E + "ServiceUnknown", owned.body
        assert error_name(unique) == E + "ServiceUnknown", unique.body
    else:
        # bootbus answers as the specification says: a connection already owns
        # the name, so DBUS_START_REPLY_ALREADY_RUNNING (2).
        assert owned.body == (2,), (error_name(owned), owned.body)
        assert unique.body == (2,), (error_name(unique), unique.body)
