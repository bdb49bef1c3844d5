"""The org.freedesktop.DBus driver: the bus's own methods, as a table.

Owns: the methods, properties and introspection data of the bus driver at
/org/freedesktop/DBus, and the mapping of the bus modules' own errors to
``org.freedesktop.DBus.Error.*`` names (no other module knows those names).
Each method is one row: interface, member, input and output signature and a
handler that returns the reply's values or raises :class:`DriverError`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..wire import message as m
from ..wire.errors import MarshalError, SignatureError
from ..wire.names import is_bus_name
from . import introspect
from . import names as nm
from .match import MatchRuleError, MatchRuleTooLong, parse_rule
from .peer import Peer, PeerState
from .router import BUS_NAME, Bus

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

IFACE = "org.freedesktop.DBus"
IFACE_MONITORING = "org.freedesktop.DBus.Monitoring"
IFACE_PEER = "org.freedesktop.DBus.Peer"
IFACE_PROPERTIES = "org.freedesktop.DBus.Properties"
IFACE_INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"

E = "org.freedesktop.DBus.Error."
START_REPLY_SUCCESS = 1
START_REPLY_ALREADY_RUNNING = 2


class DriverError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name if "." in name else E + name
        self.text = text


class Call:
    """One driver method call, made per message: slots, no dataclass (import cost)."""

    __slots__ = ("bus", "peer", "msg", "args")

    def __init__(self, bus: Bus, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        self.bus = bus
        self.peer = peer
        self.msg = msg
        self.args = args


if TYPE_CHECKING:  # Any exists for the type checker only
    Handler = Callable[[Call], tuple[Any, ...]]


# -- helpers ------------------------------------------------------------------

def _peer_for(call: Call, name: str, what: str) -> Peer | None:
    """The peer owning ``name``; None means the bus itself."""
    if name == BUS_NAME:
        return None
    peer = call.bus.lookup(name) if is_bus_name(name) else None
    if peer is None:
        raise DriverError("NameHasNoOwner", f"Could not get {what} of name '{name}': "
                                            "no such name")
    return peer


# -- org.freedesktop.DBus -------------------------------------------------------

def hello(call: Call) -> tuple[Any, ...]:
    # The first Hello is answered by the router; any later one is an error.
    raise DriverError("Failed", "Already handled an Hello message")


def request_name(call: Call) -> tuple[Any, ...]:
    name, flags = call.args
    bus, peer = call.bus, call.peer
    refused = bus.name_refused(peer, name)
    if refused:
        raise DriverError("LimitsExceeded", refused)
    if bus.policy_can_own is not None and nm_ownable(name) and not bus.policy_can_own(peer, name):
        raise DriverError("AccessDenied", f'Connection "{peer.unique_name}" is not allowed to '
                          f'own the service "{name}" due to security policies in the '
                          "configuration file")
    return (bus.request_name(peer, name, flags),)


def nm_ownable(name: str) -> bool:
    return is_bus_name(name) and not name.startswith(":") and name != BUS_NAME


def release_name(call: Call) -> tuple[Any, ...]:
    (name,) = call.args
    return (call.bus.release_name(call.peer, name),)


def start_service_by_name(call: Call) -> tuple[Any, ...]:
    name, _flags = call.args
    bus = call.bus
    if bus.lookup(name) is not None or _bus_owned(call, name):
        return (START_REPLY_ALREADY_RUNNING,)
    if bus.activator is not None and bus.activator.can_activate(name):
        bus.activator.start(bus, call.peer, call.msg, name)
        raise _Replied()
    raise DriverError("ServiceUnknown",
                      f"The name {name} was not provided by any .service files")


def update_activation_environment(call: Call) -> tuple[Any, ...]:
    _privileged(call, "UpdateActivationEnvironment")
    (env,) = call.args
    for key in env:
        if not key or "=" in key:
            raise DriverError("InvalidArgs", f"Invalid environment variable name {key!r}")
    if call.bus.activator is not None:
        call.bus.activator.update_environment(env)
    return ()


def name_has_owner(call: Call) -> tuple[Any, ...]:
    (name,) = call.args
    return (_bus_owned(call, name) or call.bus.lookup(name) is not None,)


def _bus_owned(call: Call, name: str) -> bool:
    """The driver's name and the names of services the bus answers itself."""
    return name == BUS_NAME or name in call.bus.services


def list_names(call: Call) -> tuple[Any, ...]:
    bus = call.bus
    names = [BUS_NAME, *bus.services]
    names.extend(p.unique_name for p in bus.peers.values() if p.state is PeerState.ACTIVE)
    names.extend(bus.registry.queues)
    return (names,)


def list_activatable_names(call: Call) -> tuple[Any, ...]:
    names = [BUS_NAME]
    if call.bus.activator is not None:
        names.extend(call.bus.activator.names())
    return (names,)


def add_match(call: Call) -> tuple[Any, ...]:
    (text,) = call.args
    refused = call.bus.match_refused(call.peer)
    if refused:
        raise DriverError("LimitsExceeded", refused)
    call.bus.add_match(call.peer, _rule(text))
    return ()


def remove_match(call: Call) -> tuple[Any, ...]:
    (text,) = call.args
    if not call.bus.remove_match(call.peer, _rule(text)):
        raise DriverError("MatchRuleNotFound",
                          "The given match rule wasn't found and can't be removed")
    return ()


def _rule(text: str) -> Any:
    try:
        return parse_rule(text)
    except MatchRuleTooLong as exc:
        raise DriverError("LimitsExceeded", str(exc)) from None
    except MatchRuleError as exc:
        raise DriverError("MatchRuleInvalid", str(exc)) from None


def get_name_owner(call: Call) -> tuple[Any, ...]:
    (name,) = call.args
    if _bus_owned(call, name):
        return (BUS_NAME,)
    peer = call.bus.lookup(name) if is_bus_name(name) else None  # dbus-daemon: no such name
    if peer is None:
        raise DriverError("NameHasNoOwner", f"Could not get owner of name '{name}': no such name")
    return (peer.unique_name,)


def list_queued_owners(call: Call) -> tuple[Any, ...]:
    (name,) = call.args
    bus = call.bus
    if name == BUS_NAME:
        return ([BUS_NAME],)
    if not is_bus_name(name):
        owners: list[str] = []
    elif name.startswith(":"):
        peer = bus.by_unique.get(name)
        owners = [name] if peer is not None else []
    else:
        owners = [bus.peers[p].unique_name for p in bus.registry.queued(name)]
    if not owners:
        raise DriverError("NameHasNoOwner", f"Could not get owners of name '{name}': "
                                            "no such name")
    return (owners,)


def get_unix_user(call: Call) -> tuple[Any, ...]:
    peer = _peer_for(call, call.args[0], "UID")
    return (call.bus.uid if peer is None else peer.uid,)


def get_unix_pid(call: Call) -> tuple[Any, ...]:
    peer = _peer_for(call, call.args[0], "PID")
    pid = call.bus.pid if peer is None else peer.pid
    if not pid:
        raise DriverError("UnixProcessIdUnknown",
                          f"Could not determine PID for '{call.args[0]}'")
    return (pid,)


def get_credentials(call: Call) -> tuple[Any, ...]:
    peer = _peer_for(call, call.args[0], "credentials")
    bus = call.bus
    creds: dict[str, tuple[str, Any]] = {}
    if peer is None:
        creds["UnixUserID"] = ("u", bus.uid)
        creds["ProcessID"] = ("u", bus.pid)
        return (creds,)
    creds["UnixUserID"] = ("u", peer.uid)
    if peer.gids:
        creds["UnixGroupIDs"] = ("au", list(peer.gids))
    if peer.pid:
        creds["ProcessID"] = ("u", peer.pid)
    if peer.label:
        creds["LinuxSecurityLabel"] = ("ay", peer.label.encode() + b"\0")
    return (creds,)


def get_adt_audit(call: Call) -> tuple[Any, ...]:
    _peer_for(call, call.args[0], "audit session data")
    raise DriverError("AdtAuditDataUnknown",
                      f"Could not determine audit session data for '{call.args[0]}'")


def get_selinux_context(call: Call) -> tuple[Any, ...]:
    peer = _peer_for(call, call.args[0], "security context")
    if peer is not None and peer.label and peer.label != "unconfined":
        return (peer.label.encode(),)
    raise DriverError("SELinuxSecurityContextUnknown",
                      f"Could not determine security context for '{call.args[0]}'")


def reload_config(call: Call) -> tuple[Any, ...]:
    if call.bus.reload_config is not None:
        error = call.bus.reload_config()
        if error:
            raise DriverError("Failed", error)
    return ()


def get_id(call: Call) -> tuple[Any, ...]:
    return (call.bus.bus_id,)


def become_monitor(call: Call) -> tuple[Any, ...]:
    _privileged(call, "BecomeMonitor")
    texts, flags = call.args
    if flags:
        raise DriverError("InvalidArgs", "BecomeMonitor flags must be 0")
    rules = [_rule(t) for t in texts]
    call.bus.reply(call.peer, call.msg)
    call.bus.become_monitor(call.peer, rules)
    raise _Replied()


def _privileged(call: Call, what: str) -> None:
    if call.peer.uid not in (0, call.bus.uid):
        raise DriverError("AccessDenied", f"{what} is only allowed for the bus's own user "
                          "or root")


# -- other interfaces -----------------------------------------------------------

def ping(call: Call) -> tuple[Any, ...]:
    return ()


def get_machine_id(call: Call) -> tuple[Any, ...]:
    if not call.bus.machine_id:
        raise DriverError("Failed", "Unable to determine the machine ID")
    return (call.bus.machine_id,)


def introspect_(call: Call) -> tuple[Any, ...]:
    return (introspect.driver_xml(call.msg.path or "/"),)


def _properties(call: Call) -> dict[str, tuple[str, Any]]:
    features = ["SystemdActivation"] if call.bus.activator is not None and getattr(
        call.bus.activator, "systemd", False) else []
    return {"Features": ("as", features),
            "Interfaces": ("as", [IFACE_MONITORING])}


def prop_get(call: Call) -> tuple[Any, ...]:
    iface, prop = call.args
    _check_prop_iface(iface)
    props = _properties(call)
    if prop not in props:
        raise DriverError("UnknownProperty",
                          f"Property '{prop}' not found in interface '{iface}'")
    return (props[prop],)


def prop_get_all(call: Call) -> tuple[Any, ...]:
    (iface,) = call.args
    if iface == "":
        return (_properties(call),)
    _check_prop_iface(iface)
    return (_properties(call),)


def prop_set(call: Call) -> tuple[Any, ...]:
    iface, prop, _value = call.args
    _check_prop_iface(iface)
    if prop in _properties(call):
        raise DriverError("PropertyReadOnly", f"Property '{prop}' cannot be set")
    raise DriverError("UnknownProperty", f"Property '{prop}' not found in interface '{iface}'")


def _check_prop_iface(iface: str) -> None:
    if iface != IFACE:
        raise DriverError("UnknownInterface", f"Interface '{iface}' has no properties"
                          if iface in _INTERFACES else f"Interface '{iface}' not found")


class _Replied(Exception):
    """The handler sent its own reply (Hello, BecomeMonitor, activation)."""


# interface, member -> (input signature, output signature, handler)
METHODS: dict[tuple[str, str], tuple[str, str, Handler]] = {
    (IFACE, "Hello"): ("", "s", hello),
    (IFACE, "RequestName"): ("su", "u", request_name),
    (IFACE, "ReleaseName"): ("s", "u", release_name),
    (IFACE, "StartServiceByName"): ("su", "u", start_service_by_name),
    (IFACE, "UpdateActivationEnvironment"): ("a{ss}", "", update_activation_environment),
    (IFACE, "NameHasOwner"): ("s", "b", name_has_owner),
    (IFACE, "ListNames"): ("", "as", list_names),
    (IFACE, "ListActivatableNames"): ("", "as", list_activatable_names),
    (IFACE, "AddMatch"): ("s", "", add_match),
    (IFACE, "RemoveMatch"): ("s", "", remove_match),
    (IFACE, "GetNameOwner"): ("s", "s", get_name_owner),
    (IFACE, "ListQueuedOwners"): ("s", "as", list_queued_owners),
    (IFACE, "GetConnectionUnixUser"): ("s", "u", get_unix_user),
    (IFACE, "GetConnectionUnixProcessID"): ("s", "u", get_unix_pid),
    (IFACE, "GetAdtAuditSessionData"): ("s", "ay", get_adt_audit),
    (IFACE, "GetConnectionSELinuxSecurityContext"): ("s", "ay", get_selinux_context),
    (IFACE, "GetConnectionCredentials"): ("s", "a{sv}", get_credentials),
    (IFACE, "ReloadConfig"): ("", "", reload_config),
    (IFACE, "GetId"): ("", "s", get_id),
    (IFACE_MONITORING, "BecomeMonitor"): ("asu", "", become_monitor),
    (IFACE_PEER, "Ping"): ("", "", ping),
    (IFACE_PEER, "GetMachineId"): ("", "s", get_machine_id),
    (IFACE_INTROSPECTABLE, "Introspect"): ("", "s", introspect_),
    (IFACE_PROPERTIES, "Get"): ("ss", "v", prop_get),
    (IFACE_PROPERTIES, "GetAll"): ("s", "a{sv}", prop_get_all),
    (IFACE_PROPERTIES, "Set"): ("ssv", "", prop_set),
}
_INTERFACES = {iface for iface, _ in METHODS}
_BY_MEMBER: dict[str, tuple[str, str]] = {}
for _iface, _member in METHODS:
    _BY_MEMBER.setdefault(_member, (_iface, _member))
# Privileged methods are answered only on the canonical path, as dbus-daemon does.
_CANONICAL_PATH_ONLY = {"BecomeMonitor", "UpdateActivationEnvironment"}


def handle(bus: Bus, peer: Peer, msg: m.Message) -> None:
    """Answer one method call addressed to org.freedesktop.DBus."""
    try:
        _dispatch(bus, peer, msg)
    except _Replied:
        pass
    except DriverError as exc:
        bus.send_error(peer, msg, exc.name, exc.text)


def _dispatch(bus: Bus, peer: Peer, msg: m.Message) -> None:
    member = msg.member or ""
    iface = msg.interface
    key = (iface, member) if iface is not None else _BY_MEMBER.get(member, ("", member))
    row = METHODS.get(key)
    if row is None:
        if iface is not None and iface not in _INTERFACES:
            raise DriverError("UnknownInterface", f'Interface "{iface}" does not exist')
        raise DriverError("UnknownMethod", f'Method "{member}" with signature '
                          f'"{msg.signature}" on interface "{iface}" doesn\'t exist')
    in_sig, out_sig, handler = row
    if key[1] in _CANONICAL_PATH_ONLY and msg.path != "/org/freedesktop/DBus":
        raise DriverError("AccessDenied", f"Method '{member}' is only allowed on the canonical "
                                          "object path /org/freedesktop/DBus")
    if msg.signature != in_sig:
        raise DriverError("InvalidArgs", f"Call to {member} has wrong args "
                          f"({msg.signature}, expected {in_sig})")
    try:
        args = msg.args()
    except (MarshalError, SignatureError) as exc:
        raise DriverError("InvalidArgs", f"Call to {member} has invalid arguments: {exc}") from None
    try:
        result = handler(Call(bus, peer, msg, args))
    except nm.NameError as exc:
        raise DriverError("InvalidArgs", str(exc)) from None
    bus.reply(peer, msg, out_sig, result)
