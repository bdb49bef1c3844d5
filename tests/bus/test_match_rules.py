"""Match rules: the text grammar and its quoting, every key, and the matching semantics.

Expectations come from the specification's "Match Rules" section (quoting, the
argNpath and arg0namespace examples) and from the cases dbus-daemon's own
bus/signals.c tests (which rules parse, which are equal, which match).
"""

from typing import Any

import pytest

from bootbus.bus.match import MAX_RULE_LENGTH, MatchRule, MatchRuleError, matches, parse_rule
from bootbus.wire import message as m


def parse_args(text: str) -> dict[int, str]:
    return dict(parse_rule(text).args)


# -- quoting ---------------------------------------------------------------------

def test_the_specifications_quoting_example_in_both_spellings() -> None:
    expected = {0: "'", 1: "\\", 2: ",", 3: "\\\\"}
    assert parse_args(r"arg0=''\''',arg1='\',arg2=',',arg3='\\'") == expected
    assert parse_args(r"arg0=\',arg1=\,arg2=',',arg3=\\") == expected


@pytest.mark.parametrize(("first", "second"), [
    # dbus-daemon's equality_tests: the same rule written two ways
    ("type='signal',interface='foo.bar'", "interface='foo.bar',type='signal'"),
    ("member=escape", "member='escape'"),
    ("member=icecream", "member=ice'cream'"),
    ("arg0='comma,type=comma',type=signal", "type=signal,arg0='comma,type=comma'"),
    ("arg0=escap\\e", "arg0='escap\\e'"),
    ("arg0=Time: 8 o\\'clock", "arg0='Time: 8 o'\\''clock'"),
    ("type='method_call',arg0='blah',arg1='baz'", "arg0='blah',arg1='baz',type='method_call'"),
    ("arg0namespace='fool'", "arg0namespace='fool'"),
])
def test_equal_rules(first: str, second: str) -> None:
    assert parse_rule(first).key() == parse_rule(second).key()


def test_different_rules_are_not_equal() -> None:
    texts = ["type='signal'", "type='method_call'", "arg0='a'", "arg0path='a'",
             "arg0namespace='a'", "arg1='a'", "eavesdrop='true'", "member='a'",
             "path='/a'", "path_namespace='/a'", "sender=':1.1'", "destination=':1.1'"]
    keys = [parse_rule(t).key() for t in texts]
    assert len(set(keys)) == len(keys)


def test_whitespace_and_useless_quotes() -> None:
    rule = parse_rule("    type='signal',  \tsender='org.freedes''ktop.DBusSender',   "
                      "interface='org.freedesktop.DBusInterface''''', \tmember='Foo',"
                      "path='/bar/foo',destination=':452345.34'''''")
    assert (rule.type, rule.sender, rule.interface, rule.member, rule.path, rule.destination) == (
        m.SIGNAL, "org.freedesktop.DBusSender", "org.freedesktop.DBusInterface", "Foo",
        "/bar/foo", ":452345.34")


@pytest.mark.parametrize("text", ["", "    \t", "type='signal',"])
def test_empty_and_trailing(text: str) -> None:
    parse_rule(text)


# -- every key -------------------------------------------------------------------

def test_every_key() -> None:
    rule = parse_rule("type='error',sender='com.example.S',interface='com.example.I',"
                      "member='Frob',path='/a/b',destination=':1.9',arg0='x',arg2path='/p/',"
                      "eavesdrop='true'")
    assert rule == MatchRule(
        text=rule.text, type=m.ERROR, sender="com.example.S", interface="com.example.I",
        member="Frob", path="/a/b", destination=":1.9", args=((0, "x"),),
        arg_paths=((2, "/p/"),), eavesdrop=True)
    assert parse_rule("path_namespace='/a'").path_namespace == "/a"
    assert parse_rule("arg0namespace='com.example'").arg0namespace == "com.example"
    assert parse_rule("eavesdrop='false'").eavesdrop is False
    for name, code in (("signal", m.SIGNAL), ("method_call", m.METHOD_CALL),
                       ("method_return", m.METHOD_RETURN), ("error", m.ERROR)):
        assert parse_rule(f"type='{name}'").type == code


def test_arg_indexes_up_to_63() -> None:
    assert parse_args("arg63='foo'") == {63: "foo"}
    assert parse_args("arg40='foo'") == {40: "foo"}
    assert dict(parse_rule("arg7path='/foo'").arg_paths) == {7: "/foo"}


INVALID_RULES = [
    "type", "type=", "type='chouin'", "blah='signal'", "service='youpi'",
    "interface='abc@def++'", "interface='nodots'", "member='a.b'", "member='9'",
    "sender='a'", "destination='a..b'", "path='/a/'", "path='a'", "path_namespace='/foo/'",
    "path='/foo',path_namespace='/foo'", "type='signal',type='method_call'",
    "arg0='foo',arg0='bar'", "arg3='foo',arg3='bar'", "arg30='foo',arg30='bar'",
    "arg0='a',arg0path='b'", "arg64='foo'", "arg300='foo'", "arg='foo'", "argv='foo'",
    # arg0namespace is a match on argument 0 like arg0 and arg0path: dbus-daemon
    # refuses it beside them ("Argument arg0namespace matched more than once")
    "arg0='a',arg0namespace='b'", "arg0path='a',arg0namespace='b'",
    "arg3junk='foo'", "argument='foo'", "arg1namespace='foo'", "arg0namespace=''",
    "arg0namespace='foo.'", "arg0namespace='foo.bar.'", "arg0namespace='foo..'",
    "arg0namespace='.foo'", "eavesdrop='yes'", "member='unterminated",
    "arg0='" + "x" * MAX_RULE_LENGTH + "'",
]


@pytest.mark.parametrize("text", INVALID_RULES, ids=lambda t: t[:40])
def test_invalid_rules(text: str) -> None:
    with pytest.raises(MatchRuleError):
        parse_rule(text)


def test_the_length_bound_is_inclusive() -> None:
    text = "arg0='" + "x" * (MAX_RULE_LENGTH - 7) + "'"
    assert len(text) == MAX_RULE_LENGTH
    parse_rule(text)


# -- matching --------------------------------------------------------------------

def signal(args: tuple[Any, ...] = (), signature: str = "", path: str = "/",
           member: str = "Frobated", interface: str = "com.example.I",
           destination: str | None = None) -> m.Message:
    return m.parse(m.build(m.SIGNAL, 1, path=path, interface=interface, member=member,
                           destination=destination, signature=signature, args=args))


def no_owner(_rule_sender: str, _sender: str) -> bool:
    return False


def check(text: str, msg: m.Message, sender: str | None = ":1.1",
          owns: Any = no_owner) -> bool:
    return matches(parse_rule(text), msg, sender, owns, msg.args)


FOOBAR_3 = signal(("foobar", 3), "si")

# dbus-daemon's should_match_message_1 / should_not_match_message_1, for a signal
# Frobated("foobar", int32 3)
MATCH_1 = ["type='signal'", "member='Frobated'", "arg0='foobar'",
           "type='signal',member='Frobated'", "type='signal',member='Frobated',arg0='foobar'",
           "member='Frobated',arg0='foobar'", "type='signal',arg0='foobar'",
           "arg0path='foobar'", "arg0namespace='foobar'"]
NO_MATCH_1 = ["type='method_call'", "type='error'", "type='method_return'",
              "type='signal',member='Oopsed'", "arg0='blah'", "arg1='foobar'", "arg2='foobar'",
              "arg3='foobar'", "arg0='3'", "arg1='3'", "arg0='foobar',arg1='abcdef'",
              "arg0='foobar',arg1='abcdef',arg2='abcdefghi',arg3='abcdefghi',arg4='abcdefghi'",
              "arg0path='foo'", "arg0path='foobar/'", "arg1path='3'", "arg0namespace='foo'",
              "arg0namespace='foo',arg1='abcdef'", "arg0namespace='moo'"]


@pytest.mark.parametrize("text", MATCH_1)
def test_rules_matching_a_signal_with_arguments(text: str) -> None:
    assert check(text, FOOBAR_3)


@pytest.mark.parametrize("text", NO_MATCH_1)
def test_rules_not_matching_a_signal_with_arguments(text: str) -> None:
    assert not check(text, FOOBAR_3)


NAME = signal(("com.example.backend.foo",), "s", member="NameOwnerChanged")


@pytest.mark.parametrize(("text", "ok"), [
    ("arg0namespace='com.example.backend'", True), ("arg0namespace='com.example'", True),
    ("arg0namespace='com'", True), ("arg0namespace='com.example.backend.foo'", True),
    ("arg0namespace='com.example.backend.foo.bar'", False),
    ("arg0namespace='com.example.backend.foobar'", False),
    ("arg0namespace='com.example.backend.fo'", False),
    ("arg0namespace='com.example.backen'", False), ("arg0namespace='com.exampl'", False),
    ("arg0namespace='co'", False),
])
def test_arg0namespace(text: str, ok: bool) -> None:
    assert check(text, NAME) is ok


def test_arg0namespace_needs_a_string_first_argument() -> None:
    assert not check("arg0namespace='com'", signal(("/com",), "o"))
    assert not check("arg0namespace='com'", signal())


# the specification's argNpath example: arg0path='/aa/bb/'
PATH_MATCHES = ["/aa/", "/aa/bb/", "/aa/bb/cc/", "/", "/aa/bb/cc"]
PATH_NO_MATCH = ["/aa/b", "/aa", "/aa/bb"]


@pytest.mark.parametrize("value", PATH_MATCHES)
def test_argpath_matches_strings(value: str) -> None:
    assert check("arg0path='/aa/bb/'", signal((value,), "s"))


@pytest.mark.parametrize("value", [p for p in PATH_MATCHES if not p.endswith("/") or p == "/"])
def test_argpath_matches_object_paths(value: str) -> None:
    assert check("arg0path='/aa/bb/'", signal((value,), "o"))


@pytest.mark.parametrize("value", PATH_NO_MATCH)
@pytest.mark.parametrize("code", ["s", "o"])
def test_argpath_does_not_match(value: str, code: str) -> None:
    assert not check("arg0path='/aa/bb/'", signal((value,), code))


def test_arg_matches_strings_only() -> None:
    assert not check("arg0='/a'", signal(("/a",), "o"))  # argN: STRING only
    assert check("arg0path='/a'", signal(("/a",), "o"))  # argNpath: STRING or OBJECT_PATH
    assert not check("arg0='1'", signal((1,), "i"))
    assert not check("arg0path='/a'", signal((["/a"],), "as"))
    assert check("arg1='x'", signal((1, "x"), "is"))


def test_argument_past_the_last_never_matches() -> None:
    assert not check("arg5=''", signal(("",), "s"))


# path_namespace: bus/signals.c test_matching_path_namespace
@pytest.mark.parametrize(("path", "matching", "not_matching"), [
    ("/foo/TheObjectManager", ["/", "/foo", "/foo/TheObjectManager"],
     ["/bar", "/bar/TheObjectManager"]),
    ("/foo/TheObjectManager/child_object", ["/", "/foo/TheObjectManager"], []),
    ("/foo/TheObjectManagerOther", ["/"], ["/foo/TheObjectManager"]),
    ("/", ["/"], ["/foo/TheObjectManager"]),
])
def test_path_namespace(path: str, matching: list[str], not_matching: list[str]) -> None:
    msg = signal(path=path)
    for ns in matching:
        assert check(f"type='signal',path_namespace='{ns}'", msg), ns
    for ns in not_matching:
        assert not check(f"type='signal',path_namespace='{ns}'", msg), ns


def test_path_namespace_never_matches_a_message_without_a_path() -> None:
    # "Matches messages which are sent from or to an object for which the object
    # path is either the given value, or that value followed by one or more path
    # components": a method return has no object path, so path_namespace='/' (like
    # path='/') does not match it. dbus-daemon: "path = dbus_message_get_path
    # (message); if (path == NULL) return FALSE;" before the "/" special case.
    reply = m.parse(m.build(m.METHOD_RETURN, 2, reply_serial=1))
    assert not check("path='/'", reply)
    assert not check("path_namespace='/'", reply)
    assert not check("path_namespace='/a'", reply)


def test_path() -> None:
    assert check("path='/a/b'", signal(path="/a/b"))
    assert not check("path='/a'", signal(path="/a/b"))


def test_interface_and_member_need_the_field() -> None:
    reply = m.parse(m.build(m.METHOD_RETURN, 2, reply_serial=1))
    assert not check("interface='com.example.I'", reply)
    assert not check("member='Frobated'", reply)
    assert check("", reply)


def test_destination() -> None:
    assert check("destination=':1.5'", signal(destination=":1.5"))
    assert not check("destination=':1.5'", signal(destination=":1.6"))
    assert not check("destination=':1.5'", signal())


def test_sender_by_unique_name() -> None:
    assert check("sender=':1.1'", FOOBAR_3, sender=":1.1")
    assert not check("sender=':1.2'", FOOBAR_3, sender=":1.1")


def test_sender_by_well_known_name_asks_who_owns_it() -> None:
    owners = {"com.example.S": ":1.1"}
    asked: list[tuple[str, str]] = []

    def owns(name: str, unique: str) -> bool:
        asked.append((name, unique))
        return owners.get(name) == unique

    assert check("sender='com.example.S'", FOOBAR_3, ":1.1", owns)
    assert not check("sender='com.example.S'", FOOBAR_3, ":1.2", owns)
    assert not check("sender='com.example.Other'", FOOBAR_3, ":1.1", owns)
    assert asked == [("com.example.S", ":1.1"), ("com.example.S", ":1.2"),
                     ("com.example.Other", ":1.1")]


def test_sender_of_the_bus_itself() -> None:
    assert check("sender='org.freedesktop.DBus'", FOOBAR_3, sender="org.freedesktop.DBus")
    assert not check("sender='org.freedesktop.DBus'", FOOBAR_3, sender=None)


def test_the_body_is_read_only_when_a_rule_needs_it() -> None:
    msg = FOOBAR_3
    calls = []

    def body() -> list[Any]:
        calls.append(1)
        return msg.args()

    assert matches(parse_rule("type='signal',member='Frobated'"), msg, ":1.1", no_owner, body)
    assert calls == []
    assert matches(parse_rule("member='Frobated',arg0='foobar'"), msg, ":1.1", no_owner, body)
    assert calls == [1]
    assert not matches(parse_rule("member='Other',arg0='foobar'"), msg, ":1.1", no_owner, body)
    assert calls == [1]


def test_an_unreadable_body_matches_no_argument_rule() -> None:
    assert not matches(parse_rule("arg0='x'"), FOOBAR_3, ":1.1", no_owner, lambda: None)
