"""Seed inputs for the fuzz targets: valid frames and SASL conversations real clients send.

Mutating valid input reaches deep into the parsers far faster than random
bytes do; these are the starting points for both hypothesis and atheris.
"""

from bootbus.wire import message as m

BUS = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"


def _call(serial: int, member: str, signature: str = "", args: tuple = (),
          interface: str = BUS, **kw: object) -> bytes:
    return m.build(m.METHOD_CALL, serial, path=BUS_PATH, interface=interface, member=member,
                   destination=BUS, signature=signature, args=args, **kw)  # type: ignore[arg-type]


FRAMES: list[bytes] = [
    _call(1, "Hello"),
    _call(2, "RequestName", "su", ("com.example.Fuzz", 4)),
    _call(3, "AddMatch", "s", ("type='signal',sender='com.example.B',arg0='x',arg1path='/a/'",)),
    _call(4, "RemoveMatch", "s", ("type='signal'",)),
    _call(5, "GetConnectionCredentials", "s", (":1.2",)),
    _call(6, "ListQueuedOwners", "s", ("com.example.B",)),
    _call(7, "UpdateActivationEnvironment", "a{ss}", ({"A": "b"},)),
    _call(8, "BecomeMonitor", "asu", (["type='error'"], 0),
          interface="org.freedesktop.DBus.Monitoring"),
    _call(9, "Get", "ss", (BUS, "Features"), interface="org.freedesktop.DBus.Properties"),
    _call(10, "Introspect", interface="org.freedesktop.DBus.Introspectable"),
    m.build(m.SIGNAL, 11, path="/com/example", interface="com.example.I", member="Changed",
            signature="sa{sv}as", args=("x", {"k": ("v", ("ai", [1, 2]))}, ["y"])),
    m.build(m.METHOD_CALL, 12, path="/", member="Frob", destination="com.example.B",
            signature="(yv)h", args=((1, ("d", 2.5)), 0), unix_fds=1),
    m.build(m.ERROR, 13, error_name="com.example.Error", reply_serial=1, destination=":1.2",
            signature="s", args=("boom",), endian="B"),
    m.build(m.METHOD_RETURN, 14, reply_serial=2, destination=":1.2", sender=":1.9",
            signature="ay", args=(b"\x00\xff",)),
    m.build(m.SIGNAL, 15, path="/a", interface="a.b", member="Uni", destination=":1.2",
            signature="g", args=("a{oa{sa{sv}}}",), endian="B"),
]

SASL: list[bytes] = [
    b"\0AUTH EXTERNAL 31303030\r\nBEGIN\r\n",
    b"\0AUTH EXTERNAL 31303030\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n" + FRAMES[0],
    b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
    b"\0AUTH EXTERNAL\r\nDATA 31303030\r\nBEGIN\r\n",
    b"\0AUTH ANONYMOUS\r\nAUTH EXTERNAL 30\r\nCANCEL\r\nERROR \"x\"\r\nAUTH EXTERNAL\r\nBEGIN\r\n",
]

SIGNATURES: list[str] = [
    "y", "b", "n", "q", "i", "u", "x", "t", "d", "s", "o", "g", "h", "v", "ay", "as", "a{sv}",
    "(ybnqiuxtdsogh)", "aay", "a(sa{sv})", "av", "a{oa{sa{sv}}}", "sa{sv}as", "a{yv}", "vvv",
]

RULES: list[str] = [
    ("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
     "member='NameOwnerChanged',path='/org/freedesktop/DBus',arg0='com.example'"),
    "arg0namespace='com.example',path_namespace='/a',eavesdrop='true'",
    r"arg0=''\''',arg1='\',arg2=',',arg3='\\',arg4path='/a/',destination=':1.5'",
]
