"""bootbus.io.busconfig: reading dbus-daemon's <busconfig> files.

Every element the parser knows is exercised from a file written here; every
fatal error must name the file and line; the distribution's own system.conf
and session.conf (with the system.d files installed on this machine) must
load, and a few of their real rules are asserted through the policy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from bootbus.bus.policy import (
    RULE_FDS_UNBOUNDED,
    Credentials,
    GroupRule,
    MessageInfo,
    OwnRule,
    PeerNames,
    ReceiveRule,
    SendRule,
    UserRule,
)
from bootbus.io import busconfig
from bootbus.io.busconfig import (
    DEFAULT_LIMITS,
    STANDARD_SYSTEM_SERVICEDIRS,
    BusConfig,
    ConfigError,
    ConfigFileMissing,
    ServiceDir,
    load_config,
    standard_session_servicedirs,
)
from bootbus.io.busconfig import reader as busconfig_reader
from bootbus.wire.message import ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL

SYSTEM_CONF = "/usr/share/dbus-1/system.conf"
SESSION_CONF = "/usr/share/dbus-1/session.conf"
SYSTEM_DIRS = ("/usr/share/dbus-1/system.d", "/etc/dbus-1/system.d")
BUS = "org.freedesktop.DBus"
ROOT = Credentials(0, (0,))
USER = Credentials(1000, (1000,))


class FakeUsers:
    """A user database with a few fixed entries."""

    def __init__(self, users: Mapping[str, int] | None = None,
                 groups: Mapping[str, int] | None = None) -> None:
        self.users = dict(users or {"root": 0, "alice": 1000})
        self.groups = dict(groups or {"root": 0, "staff": 50})

    def uid(self, name: str) -> int | None:
        return self.users.get(name)

    def gid(self, name: str) -> int | None:
        return self.groups.get(name)


def write(path: Path, body: str, *, wrap: bool = True) -> Path:
    text = textwrap.dedent(body).strip("\n")
    if wrap:
        text = f"<busconfig>\n{text}\n</busconfig>\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(path: Path, **kw: object) -> BusConfig:
    kw.setdefault("users", FakeUsers())
    kw.setdefault("environ", {"HOME": "/home/alice"})
    kw.setdefault("selinux_enabled", False)
    return load_config(str(path), **kw)  # type: ignore[arg-type]


LISTEN = "<listen>unix:path=/run/test</listen>"


# -- every element --------------------------------------------------------------------------------


def test_every_top_level_element(tmp_path: Path) -> None:
    conf = write(tmp_path / "bus.conf", f"""
        <type>system</type>
        <user>messagebus</user>
        <fork/>
        <keep_umask/>
        <syslog/>
        <pidfile>/run/test.pid</pidfile>
        <allow_anonymous/>
        {LISTEN}
        <listen>  tcp:host=127.0.0.1,port=0  </listen>
        <auth>EXTERNAL</auth>
        <auth>ANONYMOUS</auth>
        <servicedir>services</servicedir>
        <servicedir>/abs/services</servicedir>
        <servicedir>services</servicedir>
        <standard_system_servicedirs/>
        <servicehelper>helper</servicehelper>
        <apparmor mode="disabled"/>
        <selinux>
          <associate own="org.example.A" context="a_t"/>
          <associate own="org.example.B" context="b_t"/>
        </selinux>
        <limit name="max_names_per_connection">7</limit>
        <limit name="auth_timeout">1000</limit>
        <limit name="auth_timeout">2000</limit>
        <limit name="max_incoming_bytes">4294967296</limit>
        """)
    config = load(conf)
    assert config.type == "system" and config.user == "messagebus"
    assert config.fork and config.keep_umask and config.syslog and config.allow_anonymous
    assert config.pidfile == "/run/test.pid"
    assert config.listen == ("unix:path=/run/test", "tcp:host=127.0.0.1,port=0")
    assert config.auth == ("EXTERNAL", "ANONYMOUS")
    assert [d.path for d in config.servicedirs] == [
        f"{tmp_path}/services", "/abs/services", *STANDARD_SYSTEM_SERVICEDIRS]
    assert config.servicehelper == f"{tmp_path}/helper"
    assert config.apparmor_mode == "disabled"
    assert config.selinux_contexts == {"org.example.A": "a_t", "org.example.B": "b_t"}
    assert config.limits["max_names_per_connection"] == 7
    assert config.limits["auth_timeout"] == 2000
    assert config.limits["max_incoming_bytes"] == 2**32
    assert config.limits["max_match_rules_per_connection"] == 512
    assert config.files == (str(conf),) and config.warnings == ()


def test_defaults_of_an_almost_empty_file(tmp_path: Path) -> None:
    config = load(write(tmp_path / "bus.conf", LISTEN))
    assert config.type is None and config.user is None and config.auth == ()
    assert not (config.fork or config.syslog or config.keep_umask or config.allow_anonymous)
    assert dict(config.limits) == dict(DEFAULT_LIMITS)
    assert config.limits["max_incoming_bytes"] == 127 * 1024 * 1024
    assert config.limits["max_message_unix_fds"] == 16
    assert config.limits["auth_timeout"] == 30_000
    assert config.limits["max_replies_per_connection"] == 128
    assert config.policy.default == () and config.policy.users == {}


def test_standard_session_servicedirs() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/alice",
           "XDG_DATA_DIRS": "/opt/share::/usr/share"}
    assert standard_session_servicedirs(env) == [
        ServiceDir("/run/user/1000/dbus-1/services", watch=False, strict_naming=True),
        ServiceDir("/home/alice/.local/share/dbus-1/services"),
        ServiceDir("/opt/share/dbus-1/services"),
        ServiceDir("/usr/share/dbus-1/services"),
    ]
    assert [d.path for d in standard_session_servicedirs(
        {"HOME": "/h", "XDG_DATA_HOME": "/data"})] == [
        "/data/dbus-1/services", "/usr/local/share/dbus-1/services",
        "/usr/share/dbus-1/services"]


def test_standard_session_servicedirs_element(tmp_path: Path) -> None:
    config = load(write(tmp_path / "s.conf", f"{LISTEN}<standard_session_servicedirs/>"),
                  environ={"HOME": "/home/bob"})
    assert config.servicedirs[0].path == "/home/bob/.local/share/dbus-1/services"


def test_policy_contexts_and_rules(tmp_path: Path) -> None:
    conf = write(tmp_path / "bus.conf", f"""
        {LISTEN}
        <policy context="default">
          <allow user="*"/>
          <deny user="alice"/>
          <allow group="staff"/>
          <deny group="*"/>
          <allow user="4242"/>
          <deny own="*"/>
          <allow own_prefix="org.example"/>
          <deny send_type="method_call"/>
          <allow send_destination="org.example.S" send_interface="org.example.I"
                 send_member="M" send_path="/p" send_requested_reply="false" log="true"/>
          <allow send_destination_prefix="org.example" send_broadcast="false"
                 eavesdrop="true" min_fds="1" max_fds="4"/>
          <deny send_error="org.example.Error" send_type="error"/>
          <allow send_destination="*" send_interface="*" send_type="*"/>
          <allow receive_sender="org.example.S" receive_interface="org.example.I"
                 receive_member="M" receive_path="/p" receive_type="signal"
                 receive_requested_reply="true"/>
          <deny receive_error="org.example.Error"/>
          <allow eavesdrop="true"/>
          <deny receive_sender="*" max_fds="0"/>
        </policy>
        <policy context="mandatory"><deny own="org.example.Never"/></policy>
        <policy user="alice"><allow own="org.example.Alice"/></policy>
        <policy user="1001"><allow own="org.example.Bob"/></policy>
        <policy group="staff"><allow own="org.example.Staff"/></policy>
        <policy group="60"><allow own="org.example.Sixty"/></policy>
        <policy at_console="true"><allow own="org.example.Console"/></policy>
        <policy at_console="false"><deny own="org.example.Console"/></policy>
        """)
    policy = load(conf).policy
    assert policy.default == (
        UserRule(True), UserRule(False, 1000), GroupRule(True, 50), GroupRule(False),
        UserRule(True, 4242), OwnRule(False), OwnRule(True, "org.example", prefix=True),
        SendRule(False, message_type=METHOD_CALL),
        SendRule(True, destination="org.example.S", interface="org.example.I", member="M",
                 path="/p", requested_reply=False, log=True),
        SendRule(True, destination="org.example", destination_is_prefix=True, broadcast=False,
                 eavesdrop=True, min_fds=1, max_fds=4),
        SendRule(False, error="org.example.Error", message_type=ERROR),
        SendRule(True),
        ReceiveRule(True, sender="org.example.S", interface="org.example.I", member="M",
                    path="/p", message_type=SIGNAL, requested_reply=True),
        ReceiveRule(False, error="org.example.Error"),
        ReceiveRule(True, eavesdrop=True),
        ReceiveRule(False, max_fds=0),
    )
    assert policy.mandatory == (OwnRule(False, "org.example.Never"),)
    assert policy.users == {1000: (OwnRule(True, "org.example.Alice"),),
                            1001: (OwnRule(True, "org.example.Bob"),)}
    assert policy.groups == {50: (OwnRule(True, "org.example.Staff"),),
                             60: (OwnRule(True, "org.example.Sixty"),)}
    assert policy.at_console == (OwnRule(True, "org.example.Console"),)
    assert policy.not_at_console == (OwnRule(False, "org.example.Console"),)
    assert RULE_FDS_UNBOUNDED == SendRule(True).max_fds


def test_unknown_users_and_groups_are_warnings_and_drop_their_rules(tmp_path: Path) -> None:
    conf = write(tmp_path / "bus.conf", f"""
        {LISTEN}
        <policy user="mallory"><allow own="*"/><allow user="mallory"/></policy>
        <policy group="nogroupatall"><allow own="*"/></policy>
        <policy context="default">
          <allow user="mallory"/>
          <allow group="nogroupatall"/>
          <allow own="org.example.Kept"/>
        </policy>
        """)
    config = load(conf)
    assert config.policy.default == (OwnRule(True, "org.example.Kept"),)
    assert config.policy.users == {} and config.policy.groups == {}
    assert [w.split(": ", 1)[1] for w in config.warnings] == [
        'Unknown username "mallory" in message bus configuration file',
        'Unknown username "mallory" on element <allow>',  # as dbus-daemon, though ignored
        'Unknown group "nogroupatall" in message bus configuration file',
        'Unknown username "mallory" on element <allow>',
        'Unknown group "nogroupatall" on element <allow>',
    ]
    assert config.warnings[0].startswith(f"{conf}:3: ")


def test_unknown_elements_are_warnings_and_skipped_whole(tmp_path: Path) -> None:
    conf = write(tmp_path / "bus.conf", f"""
        {LISTEN}
        <frobnicate level="3"><policy context="default"><allow own="*"/></policy></frobnicate>
        <policy context="default">
          <check send_destination="org.example" privilege="x"/>
          <allow own="org.example.Kept"/>
        </policy>
        <listen>unix:path=/run/two<comment-like/></listen>
        """)
    config = load(conf)
    assert config.policy.default == (OwnRule(True, "org.example.Kept"),)
    assert config.listen == ("unix:path=/run/test", "unix:path=/run/two")
    assert [w.split(": ", 1)[1] for w in config.warnings] == [
        "Unknown element <frobnicate> inside <busconfig> ignored",
        "Unknown element <check> inside <policy> ignored",
        "Unknown element <comment-like> inside <listen> ignored",
    ]
    assert config.warnings[0].startswith(f"{conf}:3: ")


def test_unknown_limit_is_a_warning(tmp_path: Path) -> None:
    config = load(write(tmp_path / "bus.conf", f"""
        {LISTEN}
        <limit name="max_frobs">3</limit>
        <limit name="max_names_per_connection"> 9 (nine)</limit>
        """))
    assert "max_frobs" not in config.limits
    assert config.limits["max_names_per_connection"] == 9
    assert len(config.warnings) == 2


# -- fatal errors name the file and the line --------------------------------------------------------

ERRORS = [
    ("<policy/>", 3, "<policy> element must have exactly one of"),
    ('<policy context="default" user="root"/>', 3, "exactly one of"),
    ('<policy context="sometimes"/>', 3, 'must have the value "default" or "mandatory"'),
    ('<policy at_console="maybe"/>', 3, 'Unknown value "maybe" for at_console'),
    ('<policy context="default"><allow/></policy>', 3, "must have one or more attributes"),
    ('<policy context="default"><allow log="true"/></policy>', 3,
     "must have one or more attributes"),
    ('<policy context="default"><allow sned_type="signal"/></policy>', 3,
     'Attribute "sned_type" is invalid on <allow>'),
    ('<policy context="default"><allow send_member="M"/></policy>', 3,
     "if you specify a member you must specify an interface or a path"),
    ('<policy context="default"><allow receive_member="M"/></policy>', 3,
     "if you specify a member"),
    ('<policy context="default"><allow own="a" user="root"/></policy>', 3,
     "own, own_prefix, user, group and the message-related attributes cannot be combined"),
    ('<policy context="default"><allow own="a" send_type="signal"/></policy>', 3,
     "cannot be combined"),
    ('<policy context="default"><allow user="root" group="root"/></policy>', 3,
     "cannot be combined"),
    ('<policy context="default"><allow send_type="signal" receive_type="signal"/></policy>', 3,
     "send and receive attributes cannot be combined"),
    ('<policy context="default"><allow send_error="e.E" send_interface="i.I"/></policy>', 3,
     "send_error cannot be combined with send_member or send_interface"),
    ('<policy context="default"><allow receive_error="e.E" receive_interface="i.I"/></policy>',
     3, "receive_error cannot be combined"),
    (('<policy context="default"><allow send_destination="a" send_destination_prefix="a"/>'
      "</policy>"), 3, "send_destination cannot be combined with send_destination_prefix"),
    ('<policy context="default"><allow send_type="telegram"/></policy>', 3,
     'Bad message type "telegram"'),
    ('<policy context="default"><allow receive_type="telegram"/></policy>', 3,
     'Bad message type "telegram"'),
    ('<policy context="default"><allow send_type="signal" eavesdrop="yes"/></policy>', 3,
     'Bad value "yes" for eavesdrop attribute'),
    ('<policy context="default"><allow eavesdrop="yes"/></policy>', 3,
     'Bad value "yes" for eavesdrop attribute'),
    ('<policy context="default"><allow send_requested_reply="1"/></policy>', 3,
     "send_requested_reply attribute, must be true or false"),
    ('<policy context="default"><allow receive_requested_reply="1"/></policy>', 3,
     "receive_requested_reply attribute"),
    ('<policy context="default"><allow send_broadcast="maybe"/></policy>', 3,
     "send_broadcast attribute, must be true or false"),
    (('<policy context="default"><allow send_broadcast="true" send_destination="a.b"/>'
      "</policy>"), 3, "cannot match anything"),
    ('<policy context="default"><allow send_type="signal" max_fds="-1"/></policy>', 3,
     'Bad value "-1" for max_fds attribute'),
    ('<policy context="default"><allow receive_type="signal" min_fds="33554433"/></policy>', 3,
     "must be an integer in range 0 to 33554432"),
    ('<policy user="root"><allow user="root"/></policy>', 3,
     "<allow> rule cannot be per-user because it has bus-global semantics"),
    ('<policy group="root"><deny group="*"/></policy>', 3,
     "<deny> rule cannot be per-group"),
    ('<policy context="default"><policy context="default"/></policy>', 3,
     "Element <policy> not allowed inside <policy>"),
    ('<policy context="default"><allow own="a"><deny own="b"/></allow></policy>', 3,
     "Element <deny> is not allowed in this context"),
    ("<allow own=\"a\"/>", 3, "Element <allow> not allowed inside <busconfig>"),
    ("<associate own=\"a\" context=\"b\"/>", 3, "not allowed inside <busconfig>"),
    ('<selinux><associate own="a"/></selinux>', 3, "Element <associate> must have attributes"),
    ('<selinux><allow own="a"/></selinux>', 3, "Element <allow> not allowed inside <selinux>"),
    ("<listen>\n</listen>", 4, "XML element <listen> was expected to have content"),
    ("<include/>", 3, "XML element <include> was expected to have content"),
    ("<limit>5</limit>", 3, '<limit> element must have a "name" attribute'),
    ('<limit name="max_names_per_connection" value="5">5</limit>', 3,
     'Attribute "value" is invalid on <limit>'),
    ('<limit name="max_names_per_connection">many</limit>', 3,
     "has invalid value (could not parse as integer)"),
    ('<limit name="max_names_per_connection">-1</limit>', 3, "must be a positive number"),
    ('<limit name="max_names_per_connection">2147483648</limit>', 3, "value is too large"),
    ('<fork now="yes"/>', 3, 'Attribute "now" is invalid on <fork>'),
    ("<type>system<fork/></type>", 3, "Element <fork> is not allowed in this context"),
    ('<include ignore_missing="perhaps">x.conf</include>', 3,
     'ignore_missing attribute must have value "yes" or "no"'),
    ('<include if_selinux_enabled="1">x.conf</include>', 3, "if_selinux_enabled attribute"),
    ('<include selinux_root_relative="1">x.conf</include>', 3,
     "selinux_root_relative attribute"),
    ('<apparmor mode="sometimes"/>', 3, 'Mode attribute on <apparmor> must have value'),
    ("<fork>now</fork>", 3, "No text content expected inside XML element fork"),
    ("<policy context=\"default\">\n  text\n</policy>", 5, "No text content expected"),
    ("<include>missing.conf</include>", None, "no such file"),
    ('<policy context="default"><allow own="a"></policy>', 3, "mismatched tag"),
]


@pytest.mark.parametrize(("body", "line", "message"), ERRORS)
def test_errors_name_file_and_line(tmp_path: Path, body: str, line: int | None,
                                   message: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(f"<busconfig>\n{LISTEN}\n{body}\n</busconfig>\n")
    with pytest.raises(ConfigError) as caught:
        load(conf)
    error = caught.value
    assert message in error.message
    if line is None:
        assert error.path.endswith("missing.conf")
    else:
        assert (error.path, error.line) == (str(conf), line)
        assert str(error).startswith(f"{conf}:{line}: ")


@pytest.mark.reference
@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="dbus-daemon is not installed")
@pytest.mark.parametrize(("body", "line", "message"), ERRORS)
def test_dbus_daemon_refuses_the_same_files(tmp_path: Path, body: str, line: int | None,
                                            message: str) -> None:
    """The files bootbus refuses are refused by dbus-daemon too (it exits at once)."""
    conf = tmp_path / "bad.conf"
    conf.write_text(f"<busconfig>\n<listen>unix:path={tmp_path}/s</listen>\n{body}\n"
                    "</busconfig>\n")
    done = subprocess.run(["dbus-daemon", "--config-file", str(conf), "--nofork",
                           "--nopidfile", "--nosyslog"],
                          capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 1, done.stderr
    assert "Failed to start message bus" in done.stderr


def test_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wrong document type"):
        load(write(tmp_path / "a.conf", '<!DOCTYPE config>\n<busconfig/>', wrap=False))
    with pytest.raises(ConfigError, match="Unknown element <config> at root"):
        load(write(tmp_path / "b.conf", "<config/>", wrap=False))
    with pytest.raises(ConfigError, match='Attribute "version" is invalid on <busconfig>'):
        load(write(tmp_path / "c.conf", '<busconfig version="1"/>', wrap=False))
    with pytest.raises(ConfigError, match="entity declarations are not supported"):
        load(write(tmp_path / "d.conf", '<!DOCTYPE busconfig [<!ENTITY a "b">]>\n<busconfig/>',
                   wrap=False))
    with pytest.raises(ConfigError, match="needs one or more <listen>"):
        load(write(tmp_path / "e.conf", "<fork/>"))
    assert load(write(tmp_path / "f.conf", "<fork/>"), require_listen=False).listen == ()
    with pytest.raises(ConfigFileMissing):
        load(tmp_path / "absent.conf")
    big = tmp_path / "big.conf"
    big.write_text("<busconfig>" + " " * busconfig.MAX_CONFIG_FILE_BYTES + "</busconfig>")
    with pytest.raises(ConfigError, match="larger than"):
        load(big)
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path / "g.conf", "<busconfig>\n<fork/>\n<", wrap=False))
    assert caught.value.line == 3


# -- inclusion ---------------------------------------------------------------------------------------


def test_include_keeps_rule_order_and_merges(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "inner.conf", """
        <type>session</type>
        <user>alice</user>
        <pidfile>/run/inner.pid</pidfile>
        <fork/>
        <syslog/>
        <listen>unix:path=/run/inner</listen>
        <auth>ANONYMOUS</auth>
        <servicedir>svc</servicedir>
        <limit name="max_names_per_connection">99</limit>
        <policy context="default"><allow own="b"/></policy>
        <policy user="alice"><allow own="b2"/></policy>
        """)
    top = write(tmp_path / "top.conf", f"""
        {LISTEN}
        <type>system</type>
        <limit name="max_names_per_connection">5</limit>
        <limit name="max_match_rules_per_connection">6</limit>
        <policy context="default"><allow own="a"/></policy>
        <policy user="alice"><allow own="a2"/></policy>
        <include>sub/inner.conf</include>
        <policy context="default"><allow own="c"/></policy>
        <include ignore_missing="yes">sub/absent.conf</include>
        """)
    config = load(top)
    assert [r.name for r in config.policy.default if isinstance(r, OwnRule)] == ["a", "b", "c"]
    assert [r.name for r in config.policy.users[1000] if isinstance(r, OwnRule)] == ["a2", "b2"]
    assert config.type == "session" and config.user == "alice"
    assert config.pidfile == "/run/inner.pid" and config.fork
    assert not config.syslog  # dbus-daemon does not merge an included <syslog/>
    assert config.listen == ("unix:path=/run/test", "unix:path=/run/inner")
    assert config.auth == ("ANONYMOUS",)
    assert [d.path for d in config.servicedirs] == [f"{tmp_path}/sub/svc"]
    assert config.limits["max_names_per_connection"] == 99
    assert config.limits["max_match_rules_per_connection"] == 6
    assert config.files == (str(top), f"{tmp_path}/sub/inner.conf")


def test_included_file_inherits_limits(tmp_path: Path) -> None:
    write(tmp_path / "inner.conf", '<limit name="auth_timeout">1</limit>')
    config = load(write(tmp_path / "top.conf", f"""
        {LISTEN}
        <limit name="max_names_per_connection">5</limit>
        <include>inner.conf</include>
        """))
    assert config.limits["max_names_per_connection"] == 5
    assert config.limits["auth_timeout"] == 1


def test_ignore_missing_forgives_only_the_named_file(tmp_path: Path) -> None:
    write(tmp_path / "inner.conf", "<include>nowhere.conf</include>")
    top = write(tmp_path / "top.conf", f"""
        {LISTEN}
        <include ignore_missing="yes">inner.conf</include>
        """)
    with pytest.raises(ConfigFileMissing) as caught:
        load(top)
    assert caught.value.path == f"{tmp_path}/nowhere.conf"


def test_errors_in_included_files_name_that_file(tmp_path: Path) -> None:
    inner = write(tmp_path / "inner.conf", '<fork/>\n<policy context="default"><allow/></policy>')
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path / "top.conf", f"{LISTEN}<include>inner.conf</include>"))
    assert (caught.value.path, caught.value.line) == (str(inner), 3)


def test_circular_inclusion(tmp_path: Path) -> None:
    write(tmp_path / "a.conf", "<include>b.conf</include>")
    write(tmp_path / "b.conf", "<include>a.conf</include>")
    with pytest.raises(ConfigError, match="Circular inclusion of file"):
        load(write(tmp_path / "top.conf", f"{LISTEN}<include>a.conf</include>"))
    with pytest.raises(ConfigError, match="Circular inclusion"):
        load(write(tmp_path / "self.conf", f"{LISTEN}<include>self.conf</include>"))


def test_includedir(tmp_path: Path) -> None:
    write(tmp_path / "d" / "20-b.conf", '<policy context="default"><allow own="b"/></policy>')
    write(tmp_path / "d" / "10-a.conf", '<policy context="default"><allow own="a"/></policy>')
    write(tmp_path / "d" / "30-bad.conf", '<policy context="default"><allow/></policy>')
    write(tmp_path / "d" / "40-c.conf", '<policy context="default"><allow own="c"/></policy>')
    write(tmp_path / "d" / "notes.txt", "<not xml")
    (tmp_path / "d" / "50-dangling.conf").symlink_to(tmp_path / "nowhere")
    top = write(tmp_path / "top.conf", f"""
        {LISTEN}
        <includedir>d</includedir>
        <includedir>missing.d</includedir>
        """)
    config = load(top)
    assert [r.name for r in config.policy.default if isinstance(r, OwnRule)] == ["a", "b", "c"]
    assert config.conf_dirs == (f"{tmp_path}/d",)
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(f"{top}:3: Encountered error '{tmp_path}/d/30-bad.conf:2: "
                                         "Element <allow> must have one or more attributes'")
    assert f"{tmp_path}/d/30-bad.conf" not in config.files
    with pytest.raises(ConfigError, match="must have one or more attributes"):
        load(top, strict_includedir=True)


def test_includedir_skips_a_file_whole(tmp_path: Path) -> None:
    """A file that fails half-way contributes nothing, limits included."""
    write(tmp_path / "d" / "a.conf", """
        <limit name="auth_timeout">1</limit>
        <policy context="default"><allow own="a"/></policy>
        <policy context="default"><allow/></policy>
        """)
    config = load(write(tmp_path / "top.conf", f"{LISTEN}<includedir>d</includedir>"))
    assert config.policy.default == ()
    assert config.limits["auth_timeout"] == DEFAULT_LIMITS["auth_timeout"]


def test_selinux_includes(tmp_path: Path) -> None:
    write(tmp_path / "root" / "contexts" / "dbus_contexts", """
        <selinux><associate own="org.example.X" context="x_t"/></selinux>
        """)
    top = write(tmp_path / "top.conf", f"""
        {LISTEN}
        <include if_selinux_enabled="yes" selinux_root_relative="yes">contexts/dbus_contexts</include>
        """)
    assert load(top, selinux_enabled=False).selinux_contexts == {}
    enabled = load(top, selinux_enabled=True, selinux_policy_root=str(tmp_path / "root"))
    assert enabled.selinux_contexts == {"org.example.X": "x_t"}


def test_selinux_policy_root(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n")
    assert busconfig.selinux_policy_root(str(config)) == f"{tmp_path}/targeted"
    assert busconfig.selinux_policy_root(str(tmp_path / "none")) is None


# -- the distribution's files --------------------------------------------------------------------------

needs_debian_dbus = pytest.mark.skipif(
    not os.path.exists(SYSTEM_CONF), reason="dbus-system-bus-common is not installed")


@pytest.fixture(scope="module")
def system() -> BusConfig:
    return load_config(SYSTEM_CONF, strict_includedir=True, selinux_enabled=False)


def call(destination: str, interface: str, member: str, path: str = "/") -> MessageInfo:
    return MessageInfo(METHOD_CALL, path=path, interface=interface, member=member,
                       destination=destination)


@needs_debian_dbus
def test_debian_system_conf_loads_with_every_system_d_file(system: BusConfig) -> None:
    installed = sorted(os.path.join(d, f) for d in SYSTEM_DIRS if os.path.isdir(d)
                       for f in os.listdir(d) if f.endswith(".conf"))
    assert sorted(system.files[1:]) == installed
    assert system.files[0] == SYSTEM_CONF
    assert system.type == "system" and system.user == "messagebus"
    assert system.listen == ("unix:path=/run/dbus/system_bus_socket",)
    assert system.auth == ("EXTERNAL",)
    assert system.fork and system.syslog and system.pidfile == "/run/dbus/pid"
    assert system.servicehelper == "/usr/lib/dbus-1.0/dbus-daemon-launch-helper"
    assert [d.path for d in system.servicedirs] == list(STANDARD_SYSTEM_SERVICEDIRS)
    assert system.conf_dirs == tuple(d for d in SYSTEM_DIRS if os.path.isdir(d))
    assert dict(system.limits) == dict(DEFAULT_LIMITS)


@needs_debian_dbus
def test_debian_system_conf_default_policy(system: BusConfig) -> None:
    assert system.policy.default[:4] == (
        UserRule(True), OwnRule(False), SendRule(False, message_type=METHOD_CALL),
        SendRule(True, message_type=SIGNAL))
    assert system.policy.can_connect(USER, bus_uid=100)


@needs_debian_dbus
def test_debian_system_conf_rules(system: BusConfig) -> None:
    policy = system.policy
    bus_path = "/org/freedesktop/DBus"
    hello = call(BUS, BUS, "Hello", bus_path)
    monitor = call(BUS, "org.freedesktop.DBus.Monitoring", "BecomeMonitor", bus_path)
    update_env = call(BUS, BUS, "UpdateActivationEnvironment", bus_path)
    for creds in (ROOT, USER):
        assert policy.can_send(creds, hello, None, requested_reply=False)
        assert not policy.can_send(creds, update_env, None, requested_reply=False)
        assert not policy.can_own(creds, "org.example.Anything")
    assert policy.can_send(ROOT, monitor, None, requested_reply=False)
    assert not policy.can_send(USER, monitor, None, requested_reply=False)
    # only requested replies may be sent; signals may
    answer = MessageInfo(METHOD_RETURN, destination=":1.5", reply_serial=3)
    peer = PeerNames(":1.5")
    assert policy.can_send(USER, answer, peer, requested_reply=True)
    assert not policy.can_send(USER, answer, peer, requested_reply=False)
    assert policy.can_send(USER, MessageInfo(SIGNAL, path="/", interface="a.b", member="C"),
                           peer, requested_reply=False)
    assert not policy.can_receive(USER, MessageInfo(METHOD_CALL, destination=":1.7"),
                                  peer, requested_reply=False, eavesdropping=True)


@needs_debian_dbus
@pytest.mark.skipif(not os.path.exists("/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf"),
                    reason="systemd's bus policy is not installed")
def test_debian_systemd1_rules(system: BusConfig) -> None:
    policy = system.policy
    systemd = PeerNames(":1.0", {"org.freedesktop.systemd1"})
    manager = "org.freedesktop.systemd1.Manager"
    path = "/org/freedesktop/systemd1"
    get_unit = call("org.freedesktop.systemd1", manager, "GetUnit", path)
    start_unit = call("org.freedesktop.systemd1", manager, "StartUnit", path)  # polkit decides
    power_off = call("org.freedesktop.systemd1", manager, "PowerOff", path)
    assert policy.can_own(ROOT, "org.freedesktop.systemd1")
    assert not policy.can_own(USER, "org.freedesktop.systemd1")
    assert policy.can_send(USER, get_unit, systemd, requested_reply=False)
    assert policy.can_send(USER, start_unit, systemd, requested_reply=False)
    assert not policy.can_send(USER, power_off, systemd, requested_reply=False)
    assert policy.can_send(ROOT, power_off, systemd, requested_reply=False)


@pytest.mark.skipif(not os.path.exists(SESSION_CONF), reason="dbus-session-bus-common missing")
def test_debian_session_conf() -> None:
    config = load_config(SESSION_CONF, strict_includedir=True, environ={"HOME": "/h"})
    assert config.type == "session" and config.listen == ("unix:tmpdir=/tmp",)
    assert config.limits["max_incoming_bytes"] == 1_000_000_000
    assert config.limits["max_replies_per_connection"] == 50_000
    user = Credentials(1000, (1000,))
    assert config.policy.can_own(user, "org.example.Anything")
    assert config.policy.can_connect(user, bus_uid=1000)
    assert not config.policy.can_connect(Credentials(1001), bus_uid=1000)
    # <allow send_destination="*" eavesdrop="true"/>: even unrequested replies go through
    assert config.policy.can_send(user, MessageInfo(METHOD_RETURN, destination=":1.2",
                                                    reply_serial=9),
                                  PeerNames(":1.2"), requested_reply=False)


def test_more_inclusion_edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "inner.conf", """
        <servicehelper>/usr/lib/helper</servicehelper>
        <apparmor mode="required"/>
        """)
    config = load(write(tmp_path / "top.conf", f"""
        {LISTEN}
        <servicehelper>/old</servicehelper>
        <include>inner.conf</include>
        """))
    assert config.servicehelper == "/usr/lib/helper" and config.apparmor_mode == "required"
    # a chain of distinct files deeper than the bound
    for n in range(busconfig.MAX_INCLUDE_DEPTH + 1):
        write(tmp_path / "chain" / f"{n}.conf", f"<include>{n + 1}.conf</include>")
    with pytest.raises(ConfigError, match="nested more than"):
        load(write(tmp_path / "deep.conf", f"{LISTEN}<include>chain/0.conf</include>"))
    # a directory where a file should be, and a file where a directory should be
    (tmp_path / "adir.conf").mkdir()
    with pytest.raises(ConfigError, match="Failed to open"):
        load(write(tmp_path / "d.conf", f"{LISTEN}<include>adir.conf</include>"))
    with pytest.raises(ConfigError, match="Failed to read directory"):
        load(write(tmp_path / "e.conf", f"{LISTEN}<includedir>inner.conf</includedir>"))
    # SELinux enabled but no policy root to be found
    # patched where the include reader looks it up
    monkeypatch.setattr(busconfig_reader, "selinux_policy_root", lambda: None)
    with pytest.raises(ConfigError, match="Could not determine SELinux policy root"):
        load(write(tmp_path / "f.conf", f"""
            {LISTEN}
            <include selinux_root_relative="yes">contexts/dbus_contexts</include>
            """), selinux_enabled=True)


def test_system_user_database() -> None:
    users = busconfig.SystemUserDatabase()
    assert users.uid("root") == 0 and users.gid("root") == 0
    assert users.uid("no-such-user-bootbus") is None
    assert users.gid("no-such-group-bootbus") is None
