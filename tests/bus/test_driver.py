"""The org.freedesktop.DBus driver through the router: answers, errors and signals.

Where an expected error name is not given by the specification it is the one
dbus-daemon 1.14 (Debian 12) answers with; each such case says so.
"""

from typing import Any

import pytest

from bootbus.bus import names as nm
from bootbus.bus.match import MAX_RULE_LENGTH
from bootbus.bus.peer import Peer
from bootbus.wire import message as m

from .fakebus import BUS, BUS_PATH, MACHINE_ID, Client, connect, new_bus, summary

E = "org.freedesktop.DBus.Error."
PROPS = "org.freedesktop.DBus.Properties"
PEER = "org.freedesktop.DBus.Peer"


def ok(client: Client, member: str, signature: str = "", args: tuple[Any, ...] = (),
       interface: str = BUS, path: str = BUS_PATH) -> list[Any]:
    answer = client.ask_bus(member, signature, args, interface, path)
    assert answer.type == m.METHOD_RETURN, (answer.error_name, answer.args())
    assert (answer.sender, answer.destination) == (BUS, client.unique_name)
    return answer.args()


def fails(client: Client, member: str, signature: str = "", args: tuple[Any, ...] = (),
          interface: str = BUS, path: str = BUS_PATH) -> tuple[str, str]:
    answer = client.ask_bus(member, signature, args, interface, path)
    assert answer.type == m.ERROR, answer.args()
    assert answer.signature == "s" and answer.sender == BUS
    return answer.error_name or "", answer.args()[0]


# -- names -----------------------------------------------------------------------

def test_request_name_replies_and_signals_with_three_owners() -> None:
    bus = new_bus()
    watcher = connect(bus)
    watcher.add_match("member='NameOwnerChanged',arg0='com.example.Q'")
    a, b, c = connect(bus), connect(bus), connect(bus)
    assert ok(a, "RequestName", "su", ("com.example.Q", nm.ALLOW_REPLACEMENT)) == [
        nm.PRIMARY_OWNER]
    assert [summary(s) for s in a.received()] == [
        ("signal", BUS, a.unique_name, "NameAcquired", ["com.example.Q"])]
    assert ok(b, "RequestName", "su", ("com.example.Q", 0)) == [nm.IN_QUEUE]
    assert ok(c, "RequestName", "su", ("com.example.Q", nm.DO_NOT_QUEUE)) == [nm.EXISTS]
    assert ok(a, "RequestName", "su", ("com.example.Q", nm.ALLOW_REPLACEMENT)) == [
        nm.ALREADY_OWNER]
    assert ok(c, "ListQueuedOwners", "s", ("com.example.Q",)) == [[a.unique_name,
                                                                   b.unique_name]]
    assert ok(c, "RequestName", "su", ("com.example.Q", nm.REPLACE_EXISTING)) == [
        nm.PRIMARY_OWNER]
    assert [summary(s) for s in a.received()] == [
        ("signal", BUS, a.unique_name, "NameLost", ["com.example.Q"])]
    assert [summary(s) for s in c.received()] == [
        ("signal", BUS, c.unique_name, "NameAcquired", ["com.example.Q"])]
    assert ok(b, "ListQueuedOwners", "s", ("com.example.Q",)) == [[
        c.unique_name, a.unique_name, b.unique_name]]
    assert ok(b, "GetNameOwner", "s", ("com.example.Q",)) == [c.unique_name]
    assert [summary(s)[3:] for s in watcher.received()] == [
        ("NameOwnerChanged", ["com.example.Q", "", a.unique_name]),
        ("NameOwnerChanged", ["com.example.Q", a.unique_name, c.unique_name])]
    assert ok(c, "ReleaseName", "s", ("com.example.Q",)) == [nm.RELEASED]
    assert ok(c, "ReleaseName", "s", ("com.example.Q",)) == [nm.NOT_OWNER]
    assert ok(c, "ReleaseName", "s", ("com.example.None",)) == [nm.NON_EXISTENT]
    assert ok(b, "GetNameOwner", "s", ("com.example.Q",)) == [a.unique_name]


@pytest.mark.parametrize(("member", "signature", "args"), [
    ("RequestName", "su", (":1.5", 0)), ("RequestName", "su", (BUS, 0)),
    ("RequestName", "su", ("not valid", 0)), ("ReleaseName", "s", (":1.0",)),
    ("ReleaseName", "s", (BUS,)), ("ReleaseName", "s", ("not valid",)),
])
def test_unownable_names_are_invalid_args(member: str, signature: str,
                                          args: tuple[Any, ...]) -> None:
    assert fails(connect(new_bus()), member, signature, args)[0] == E + "InvalidArgs"


def test_list_names_and_name_has_owner() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    ok(a, "RequestName", "su", ("com.example.A", 0))
    (names,) = ok(b, "ListNames")
    assert sorted(names) == sorted([BUS, a.unique_name, b.unique_name, "com.example.A"])
    for name, owned in ((BUS, True), (a.unique_name, True), ("com.example.A", True),
                        ("com.example.B", False), (":1.99", False), ("not valid", False)):
        assert ok(b, "NameHasOwner", "s", (name,)) == [owned], name
    assert ok(b, "GetNameOwner", "s", (BUS,)) == [BUS]
    assert ok(b, "GetNameOwner", "s", (a.unique_name,)) == [a.unique_name]
    assert ok(b, "ListQueuedOwners", "s", (BUS,)) == [[BUS]]
    assert ok(b, "ListActivatableNames") == [[BUS]]


@pytest.mark.parametrize("member", [
    "GetNameOwner", "ListQueuedOwners", "GetConnectionUnixUser", "GetConnectionUnixProcessID",
    "GetConnectionCredentials", "GetAdtAuditSessionData", "GetConnectionSELinuxSecurityContext",
])
@pytest.mark.parametrize("name", ["com.example.Missing", ":1.99"])
def test_queries_about_a_missing_name(member: str, name: str) -> None:
    error, text = fails(connect(new_bus()), member, "s", (name,))
    assert error == E + "NameHasNoOwner"
    assert text.endswith(f"of name '{name}': no such name")


@pytest.mark.parametrize("member", [
    "GetNameOwner", "ListQueuedOwners", "GetConnectionUnixUser", "GetConnectionUnixProcessID",
    "GetConnectionCredentials", "GetAdtAuditSessionData", "GetConnectionSELinuxSecurityContext",
])
def test_queries_about_an_invalid_name_answer_as_dbus_daemon(member: str) -> None:
    # dbus-daemon 1.14: "Could not get UID of name 'not valid': no such name", with
    # NameHasNoOwner, for every one of these (an invalid name simply has no owner)
    error, _text = fails(connect(new_bus()), member, "s", ("not valid",))
    assert error == E + "NameHasNoOwner"


# -- credentials -------------------------------------------------------------------

def test_credentials_of_a_peer_and_of_the_bus() -> None:
    bus = new_bus()
    a = connect(bus, uid=1000, pid=4242, label="system_u:system_r:foo_t:s0")
    b = connect(bus)
    assert ok(b, "GetConnectionUnixUser", "s", (a.unique_name,)) == [1000]
    assert ok(b, "GetConnectionUnixProcessID", "s", (a.unique_name,)) == [4242]
    assert ok(b, "GetConnectionCredentials", "s", (a.unique_name,)) == [{
        "UnixUserID": ("u", 1000), "UnixGroupIDs": ("au", [1000, 27]), "ProcessID": ("u", 4242),
        "LinuxSecurityLabel": ("ay", b"system_u:system_r:foo_t:s0\0")}]
    assert ok(b, "GetConnectionSELinuxSecurityContext", "s", (a.unique_name,)) == [
        b"system_u:system_r:foo_t:s0"]
    assert ok(b, "GetConnectionUnixUser", "s", (BUS,)) == [0]
    assert ok(b, "GetConnectionUnixProcessID", "s", (BUS,)) == [1]
    assert ok(b, "GetConnectionCredentials", "s", (BUS,)) == [{
        "UnixUserID": ("u", 0), "ProcessID": ("u", 1)}]
    assert fails(b, "GetAdtAuditSessionData", "s", (BUS,))[0] == E + "AdtAuditDataUnknown"
    assert fails(b, "GetConnectionSELinuxSecurityContext", "s", (BUS,))[0] == (
        E + "SELinuxSecurityContextUnknown")


def test_credentials_by_well_known_name() -> None:
    bus = new_bus()
    a, b = connect(bus, uid=7, pid=70), connect(bus)
    ok(a, "RequestName", "su", ("com.example.A", 0))
    assert ok(b, "GetConnectionUnixUser", "s", ("com.example.A",)) == [7]


# -- match rules ---------------------------------------------------------------------

def test_add_and_remove_match() -> None:
    bus = new_bus()
    a = connect(bus)
    assert ok(a, "AddMatch", "s", ("type='signal'",)) == []
    assert ok(a, "RemoveMatch", "s", ("type='signal'",)) == []
    assert fails(a, "RemoveMatch", "s", ("type='signal'",))[0] == E + "MatchRuleNotFound"
    assert fails(a, "AddMatch", "s", ("type='nope'",))[0] == E + "MatchRuleInvalid"
    assert fails(a, "RemoveMatch", "s", ("type='nope'",))[0] == E + "MatchRuleInvalid"


def test_a_rule_over_1024_bytes_is_limits_exceeded() -> None:
    # dbus-daemon: LimitsExceeded "Match rule text is 1107 bytes, maximum is 1024"
    a = connect(new_bus())
    assert ok(a, "AddMatch", "s", ("arg0='" + "x" * (MAX_RULE_LENGTH - 7) + "'",)) == []
    assert fails(a, "AddMatch", "s", ("arg0='" + "x" * MAX_RULE_LENGTH + "'",))[0] == (
        E + "LimitsExceeded")


def test_eavesdrop_may_be_given_twice() -> None:
    # dbus-daemon accepts it on purpose (bus/signals.c: "it might be used twice to
    # disable eavesdropping when it's automatically added (eg dbus-monitor/bustle)");
    # the last one wins.
    bus = new_bus()
    a, b, c = connect(bus), connect(bus), connect(bus)
    assert ok(c, "AddMatch", "s", ("eavesdrop='true',eavesdrop='false'",)) == []
    a.signal("ToB", destination=b.unique_name)
    assert c.received() == []


# -- calls to missing names -----------------------------------------------------------

def test_no_auto_start_call_to_a_missing_name_is_name_has_no_owner() -> None:
    # dbus-daemon 1.14: with NO_AUTO_START, NameHasNoOwner 'Name "X" does not exist';
    # without it, ServiceUnknown ("was not provided by any .service files").
    a = connect(new_bus())
    serial = a.call("com.example.Missing", "Frob", flags=m.FLAG_NO_AUTO_START)
    err = a.reply_to(serial)
    assert err.error_name == E + "NameHasNoOwner"
    assert err.args() == ['Name "com.example.Missing" does not exist']


# -- method dispatch errors ---------------------------------------------------------

def test_unknown_method_and_interface() -> None:
    a = connect(new_bus())
    assert fails(a, "Nope")[0] == E + "UnknownMethod"
    assert fails(a, "Nope", interface="com.example.NoSuch")[0] == E + "UnknownInterface"
    assert fails(a, "Ping", interface=BUS)[0] == E + "UnknownMethod"  # Ping is on Peer


@pytest.mark.parametrize(("member", "signature", "args"), [
    ("GetId", "s", ("x",)), ("RequestName", "s", ("com.example.A",)),
    ("NameHasOwner", "u", (7,)), ("ListNames", "i", (1,)), ("AddMatch", "", ()),
])
def test_wrong_signature_is_invalid_args(member: str, signature: str,
                                         args: tuple[Any, ...]) -> None:
    error, text = fails(connect(new_bus()), member, signature, args)
    assert error == E + "InvalidArgs"
    assert member in text


def test_methods_without_an_interface_are_looked_up_by_member() -> None:
    bus = new_bus()
    a = connect(bus)
    serial = a.call(BUS, "GetId", path=BUS_PATH)
    assert a.reply_to(serial).args() == [bus.bus_id]
    serial = a.call(BUS, "Ping", path=BUS_PATH)
    assert a.reply_to(serial).type == m.METHOD_RETURN


def test_no_reply_expected_calls_to_the_driver_are_not_answered() -> None:
    bus = new_bus()
    a = connect(bus)
    a.call_bus("RequestName", "su", ("com.example.Quiet", 0), flags=m.FLAG_NO_REPLY_EXPECTED)
    a.call_bus("Nope", flags=m.FLAG_NO_REPLY_EXPECTED)
    assert [s.member for s in a.received()] == ["NameAcquired"]
    assert bus.registry.owner("com.example.Quiet") == a.peer.id


# -- the other interfaces ----------------------------------------------------------------

def test_peer_interface_and_get_id() -> None:
    bus = new_bus()
    a = connect(bus)
    assert ok(a, "Ping", interface=PEER) == []
    assert ok(a, "GetMachineId", interface=PEER) == [MACHINE_ID]
    assert ok(a, "GetId") == [bus.bus_id]


def test_properties() -> None:
    a = connect(new_bus())
    assert ok(a, "Get", "ss", (BUS, "Features"), interface=PROPS) == [("as", [])]
    assert ok(a, "Get", "ss", (BUS, "Interfaces"), interface=PROPS) == [
        ("as", ["org.freedesktop.DBus.Monitoring"])]
    assert ok(a, "GetAll", "s", (BUS,), interface=PROPS) == [{
        "Features": ("as", []), "Interfaces": ("as", ["org.freedesktop.DBus.Monitoring"])}]
    assert fails(a, "Get", "ss", (BUS, "Nope"), interface=PROPS)[0] == E + "UnknownProperty"
    assert fails(a, "Get", "ss", ("com.example.No", "Features"),
                 interface=PROPS)[0] == E + "UnknownInterface"
    assert fails(a, "Set", "ssv", (BUS, "Features", ("as", [])),
                 interface=PROPS)[0] == E + "PropertyReadOnly"


def test_introspection_walks_down_to_the_driver() -> None:
    a = connect(new_bus())
    intro = "org.freedesktop.DBus.Introspectable"
    for path, child in (("/", "org"), ("/org", "freedesktop"), ("/org/freedesktop", "DBus")):
        (xml,) = ok(a, "Introspect", interface=intro, path=path)
        assert f'<node name="{child}"/>' in xml
    (xml,) = ok(a, "Introspect", interface=intro)
    for member in ("Hello", "RequestName", "AddMatch", "GetConnectionCredentials",
                   "BecomeMonitor", "NameOwnerChanged"):
        assert f'name="{member}"' in xml


# -- privileged methods -----------------------------------------------------------------

def test_become_monitor_is_for_root_or_the_bus_user() -> None:
    bus = new_bus()
    user = connect(bus, uid=1000)
    error, _ = fails(user, "BecomeMonitor", "asu", ([], 0),
                     interface="org.freedesktop.DBus.Monitoring")
    assert error == E + "AccessDenied"
    assert fails(connect(bus, uid=0), "BecomeMonitor", "asu", ([], 1),
                 interface="org.freedesktop.DBus.Monitoring")[0] == E + "InvalidArgs"
    assert fails(connect(bus, uid=0), "BecomeMonitor", "asu", (["type='nope'"], 0),
                 interface="org.freedesktop.DBus.Monitoring")[0] == E + "MatchRuleInvalid"


def test_privileged_methods_only_on_the_canonical_path() -> None:
    root = connect(new_bus(), uid=0)
    error, _ = fails(root, "UpdateActivationEnvironment", "a{ss}", ({"A": "b"},), path="/")
    assert error == E + "AccessDenied"
    assert ok(root, "UpdateActivationEnvironment", "a{ss}", ({"A": "b"},)) == []
    assert fails(root, "UpdateActivationEnvironment", "a{ss}", ({"A=B": "b"},))[0] == (
        E + "InvalidArgs")
    user = connect(root.bus, uid=1000)
    assert fails(user, "UpdateActivationEnvironment", "a{ss}", ({"A": "b"},))[0] == (
        E + "AccessDenied")


def test_start_service_by_name_of_a_missing_name() -> None:
    a = connect(new_bus())
    assert fails(a, "StartServiceByName", "su", ("com.example.Missing", 0))[0] == (
        E + "ServiceUnknown")


def test_reload_config_without_a_configuration() -> None:
    assert ok(connect(new_bus()), "ReloadConfig") == []


def test_reload_config_failure_is_reported() -> None:
    bus = new_bus()
    bus.reload_config = lambda: "bad file: line 3"
    assert fails(connect(bus), "ReloadConfig") == (E + "Failed", "bad file: line 3")


# -- limits, hooks and the less common answers ---------------------------------------

def test_names_per_peer_are_bounded() -> None:
    bus = new_bus()
    bus.limits.max_names = 2
    a = connect(bus)
    assert ok(a, "RequestName", "su", ("com.example.A", 0)) == [nm.PRIMARY_OWNER]
    assert ok(a, "RequestName", "su", ("com.example.B", 0)) == [nm.PRIMARY_OWNER]
    assert fails(a, "RequestName", "su", ("com.example.C", 0))[0] == E + "LimitsExceeded"
    assert ok(a, "RequestName", "su", ("com.example.A", 0)) == [nm.ALREADY_OWNER]


def test_match_rules_per_peer_are_bounded() -> None:
    bus = new_bus()
    bus.limits.max_match_rules = 2
    a = connect(bus)
    ok(a, "AddMatch", "s", ("type='signal'",))
    ok(a, "AddMatch", "s", ("type='error'",))
    assert fails(a, "AddMatch", "s", ("type='method_call'",))[0] == E + "LimitsExceeded"


def test_the_policy_decides_who_may_own_a_name() -> None:
    bus = new_bus()
    asked: list[tuple[int, str]] = []

    def can_own(peer: Peer, name: str) -> bool:
        asked.append((peer.uid, name))
        return name != "com.example.Root" or peer.uid == 0

    bus.policy_can_own = can_own
    user, root = connect(bus, uid=1000), connect(bus, uid=0)
    assert fails(user, "RequestName", "su", ("com.example.Root", 0))[0] == E + "AccessDenied"
    assert ok(root, "RequestName", "su", ("com.example.Root", 0)) == [nm.PRIMARY_OWNER]
    assert fails(user, "RequestName", "su", (":1.9", 0))[0] == E + "InvalidArgs"
    assert asked == [(1000, "com.example.Root"), (0, "com.example.Root")]


class FakeActivator:
    """The activation hooks the driver calls (the supervisor provides the real ones)."""

    systemd = True

    def __init__(self) -> None:
        self.started: list[str] = []
        self.environment: dict[str, str] = {}

    def can_activate(self, name: str) -> bool:
        return name == "com.example.Activatable"

    def start(self, bus: Any, peer: Peer, msg: m.Message, name: str) -> None:
        self.started.append(name)
        bus.reply(peer, msg, "u", (1,))

    def update_environment(self, env: dict[str, str]) -> None:
        self.environment.update(env)

    def names(self) -> list[str]:
        return ["com.example.Activatable"]


def test_activation_hooks() -> None:
    bus = new_bus()
    bus.activator = activator = FakeActivator()
    root = connect(bus, uid=0)
    assert ok(root, "ListActivatableNames") == [[BUS, "com.example.Activatable"]]
    assert ok(root, "StartServiceByName", "su", ("com.example.Activatable", 0)) == [1]
    assert activator.started == ["com.example.Activatable"]
    assert fails(root, "StartServiceByName", "su", ("com.example.Other", 0))[0] == (
        E + "ServiceUnknown")
    assert ok(root, "UpdateActivationEnvironment", "a{ss}", ({"LANG": "C"},)) == []
    assert activator.environment == {"LANG": "C"}
    assert ok(root, "Get", "ss", (BUS, "Features"), interface=PROPS) == [
        ("as", ["SystemdActivation"])]


def test_a_peer_without_a_pid() -> None:
    bus = new_bus()
    a, nopid = connect(bus), connect(bus, pid=0)
    assert fails(a, "GetConnectionUnixProcessID", "s", (nopid.unique_name,))[0] == (
        E + "UnixProcessIdUnknown")
    assert "ProcessID" not in ok(a, "GetConnectionCredentials", "s", (nopid.unique_name,))[0]


def test_get_machine_id_without_one_fails() -> None:
    bus = new_bus()
    bus.machine_id = ""
    assert fails(connect(bus), "GetMachineId", interface=PEER)[0] == E + "Failed"


def test_setting_an_unknown_property() -> None:
    a = connect(new_bus())
    assert fails(a, "Set", "ssv", (BUS, "Nope", ("s", "x")), interface=PROPS)[0] == (
        E + "UnknownProperty")
    assert fails(a, "GetAll", "s", ("com.example.No",), interface=PROPS)[0] == (
        E + "UnknownInterface")


def test_an_undecodable_body_is_invalid_args() -> None:
    # the framer refuses invalid bodies; the driver still answers rather than fail
    # if one reaches it another way
    bus = new_bus()
    a = connect(bus)
    raw = bytearray(m.build(m.METHOD_CALL, 99, path=BUS_PATH, interface=BUS,
                            member="RequestName", destination=BUS, signature="su",
                            args=("com.example.A", 0)))
    raw[-7] = 0x78  # the NUL after "com.example.A" (then 2 bytes of padding, the UINT32)
    bus.dispatch(a.peer, m.parse(bytes(raw)))
    assert a.reply_to(99).error_name == E + "InvalidArgs"
