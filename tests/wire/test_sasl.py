"""SASL server conversations, as real clients hold them.

The lines are those of the specification's "Authentication Protocol" section
and of the clients in use: libdbus and GDBus send ``AUTH EXTERNAL <hex uid>``,
sd-bus pipelines its whole side of the exchange (and then its first message)
in one write. The server's replies are compared byte for byte.
"""

import pytest

from bootbus.wire.errors import AuthError
from bootbus.wire.sasl import MAX_COMMANDS, MAX_LINE_LENGTH, SaslServer, State

GUID = "0123456789abcdef0123456789abcdef"
OK = b"OK " + GUID.encode() + b"\r\n"
REJECTED = b"REJECTED EXTERNAL\r\n"
UID = 1000
UID_HEX = b"31303030"  # "1000" in ASCII, hex-encoded


def server(uid: int = UID, allow_unix_fd: bool = True) -> SaslServer:
    return SaslServer(peer_uid=uid, guid=GUID, allow_unix_fd=allow_unix_fd)


def converse(sasl: SaslServer, *lines: bytes) -> list[bytes]:
    """Send each client line (CRLF added); return the server's reply to each."""
    return [sasl.feed(line + b"\r\n") for line in lines]


def test_external_with_initial_response() -> None:
    sasl = server()
    assert sasl.feed(b"\0") == b""
    assert converse(sasl, b"AUTH EXTERNAL " + UID_HEX, b"BEGIN") == [OK, b""]
    assert sasl.state is State.DONE
    assert sasl.uid == UID and sasl.unix_fd is False and sasl.leftover == b""


def test_external_without_initial_response_asks_for_data() -> None:
    sasl = server()
    sasl.feed(b"\0")
    assert converse(sasl, b"AUTH EXTERNAL") == [b"DATA\r\n"]
    assert sasl.state is State.WAIT_DATA
    assert converse(sasl, b"DATA " + UID_HEX, b"BEGIN") == [OK, b""]
    assert sasl.state is State.DONE and sasl.uid == UID


def test_external_with_empty_data_uses_the_socket_credentials() -> None:
    # GDBus: "AUTH EXTERNAL" then an empty "DATA" means "whoever the socket says"
    sasl = server(uid=0)
    sasl.feed(b"\0")
    assert converse(sasl, b"AUTH EXTERNAL", b"DATA", b"BEGIN") == [b"DATA\r\n", OK, b""]
    assert sasl.uid == 0


def test_root_uid_zero() -> None:
    sasl = server(uid=0)
    assert sasl.feed(b"\0AUTH EXTERNAL 30\r\n") == OK


def test_wrong_uid_is_rejected_and_may_retry() -> None:
    sasl = server(uid=1000)
    sasl.feed(b"\0")
    assert converse(sasl, b"AUTH EXTERNAL 30") == [REJECTED]  # claims root
    assert sasl.state is State.WAIT_AUTH and sasl.uid is None
    assert converse(sasl, b"AUTH EXTERNAL " + UID_HEX) == [OK]


@pytest.mark.parametrize("response", [b"zz", b"3", b"3x30", b"2d31", b"61"],
                         ids=["not hex", "odd length", "bad digit", "negative", "not a number"])
def test_malformed_identities_are_rejected(response: bytes) -> None:
    sasl = server(uid=0)
    sasl.feed(b"\0")
    assert converse(sasl, b"AUTH EXTERNAL " + response) == [REJECTED]
    assert sasl.state is State.WAIT_AUTH


def test_wrong_uid_in_data_is_rejected() -> None:
    sasl = server()
    sasl.feed(b"\0")
    assert converse(sasl, b"AUTH EXTERNAL", b"DATA 30") == [b"DATA\r\n", REJECTED]
    assert sasl.state is State.WAIT_AUTH


@pytest.mark.parametrize("line", [b"AUTH", b"AUTH ANONYMOUS", b"AUTH DBUS_COOKIE_SHA1 31303030",
                                  b"AUTH external 31303030"])
def test_other_mechanisms_are_rejected_with_the_list(line: bytes) -> None:
    sasl = server()
    sasl.feed(b"\0")
    assert converse(sasl, line) == [REJECTED]


def test_negotiate_unix_fd_after_ok() -> None:
    sasl = server()
    sasl.feed(b"\0")
    replies = converse(sasl, b"AUTH EXTERNAL " + UID_HEX, b"NEGOTIATE_UNIX_FD", b"BEGIN")
    assert replies == [OK, b"AGREE_UNIX_FD\r\n", b""]
    assert sasl.unix_fd is True and sasl.state is State.DONE


def test_negotiate_unix_fd_refused_when_the_transport_cannot() -> None:
    sasl = server(allow_unix_fd=False)
    sasl.feed(b"\0")
    (ok, reply) = converse(sasl, b"AUTH EXTERNAL " + UID_HEX, b"NEGOTIATE_UNIX_FD")
    assert ok == OK and reply.startswith(b"ERROR") and reply.endswith(b"\r\n")
    assert sasl.unix_fd is False and sasl.state is State.WAIT_BEGIN
    assert converse(sasl, b"BEGIN") == [b""]


def test_negotiate_unix_fd_before_authentication_is_an_error() -> None:
    sasl = server()
    sasl.feed(b"\0")
    (reply,) = converse(sasl, b"NEGOTIATE_UNIX_FD")
    assert reply.startswith(b"ERROR") and sasl.state is State.WAIT_AUTH and not sasl.unix_fd


@pytest.mark.parametrize("setup", [[], [b"AUTH EXTERNAL"], [b"AUTH EXTERNAL " + UID_HEX]],
                         ids=["WaitingForAuth", "WaitingForData", "WaitingForBegin"])
def test_cancel_is_answered_with_rejected_in_every_state(setup: list[bytes]) -> None:
    sasl = server()
    sasl.feed(b"\0")
    converse(sasl, *setup)
    assert converse(sasl, b"CANCEL") == [REJECTED]
    assert sasl.state is State.WAIT_AUTH
    assert converse(sasl, b"AUTH EXTERNAL " + UID_HEX, b"BEGIN") == [OK, b""]


@pytest.mark.parametrize("setup", [[], [b"AUTH EXTERNAL"], [b"AUTH EXTERNAL " + UID_HEX]],
                         ids=["WaitingForAuth", "WaitingForData", "WaitingForBegin"])
def test_client_error_is_answered_with_rejected(setup: list[bytes]) -> None:
    sasl = server()
    sasl.feed(b"\0")
    converse(sasl, *setup)
    assert converse(sasl, b'ERROR "I did not understand"') == [REJECTED]
    assert sasl.state is State.WAIT_AUTH


_STATES = [("WaitingForAuth", [], State.WAIT_AUTH),
           ("WaitingForData", [b"AUTH EXTERNAL"], State.WAIT_DATA),
           ("WaitingForBegin", [b"AUTH EXTERNAL " + UID_HEX], State.WAIT_BEGIN)]
_UNEXPECTED = [b"HELLO", b"OK", b"DATA 30", b"AUTH EXTERNAL 30", b"", b"REJECTED EXTERNAL",
               b"\xff\xfe"]
# every (state, line) pair except the commands that state accepts
_UNEXPECTED_CASES = [
    pytest.param(setup, state, line, id=f"{name}-{line!r}")
    for name, setup, state in _STATES for line in _UNEXPECTED
    if (state, line.split(b" ")[0]) not in ((State.WAIT_AUTH, b"AUTH"),
                                             (State.WAIT_DATA, b"DATA"))
]


@pytest.mark.parametrize(("setup", "state", "line"), _UNEXPECTED_CASES)
def test_unexpected_commands_get_error_and_keep_the_state(setup: list[bytes], state: State,
                                                          line: bytes) -> None:
    sasl = server()
    sasl.feed(b"\0")
    converse(sasl, *setup)
    (reply,) = converse(sasl, line)
    assert reply.startswith(b"ERROR") and reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1
    assert sasl.state is state


@pytest.mark.parametrize("setup", [[], [b"AUTH EXTERNAL"]], ids=["WaitingForAuth",
                                                                  "WaitingForData"])
def test_begin_before_ok_disconnects(setup: list[bytes]) -> None:
    sasl = server()
    sasl.feed(b"\0")
    converse(sasl, *setup)
    with pytest.raises(AuthError):
        converse(sasl, b"BEGIN")


def test_begin_after_a_rejection_disconnects() -> None:
    sasl = server()
    sasl.feed(b"\0")
    converse(sasl, b"AUTH EXTERNAL 30")
    with pytest.raises(AuthError):
        converse(sasl, b"BEGIN")


def test_missing_leading_nul_disconnects() -> None:
    with pytest.raises(AuthError):
        server().feed(b"AUTH EXTERNAL " + UID_HEX + b"\r\n")


def test_leading_nul_may_arrive_alone_and_late() -> None:
    sasl = server()
    assert sasl.feed(b"") == b"" and sasl.state is State.WAIT_NUL
    assert sasl.feed(b"\0") == b"" and sasl.state is State.WAIT_AUTH


def test_over_long_line_without_crlf_disconnects() -> None:
    sasl = server()
    sasl.feed(b"\0")
    sasl.feed(b"A" * MAX_LINE_LENGTH)  # not yet over the bound
    with pytest.raises(AuthError):
        sasl.feed(b"A")


def test_over_long_line_with_crlf_disconnects() -> None:
    sasl = server()
    sasl.feed(b"\0")
    with pytest.raises(AuthError):
        sasl.feed(b"AUTH EXTERNAL " + b"3" * MAX_LINE_LENGTH + b"\r\n")


def test_a_line_at_the_bound_is_read() -> None:
    sasl = server()
    sasl.feed(b"\0")
    line = b"NOOP " + b"x" * (MAX_LINE_LENGTH - 5)
    (reply,) = converse(sasl, line)
    assert reply.startswith(b"ERROR") and sasl.state is State.WAIT_AUTH
    assert converse(sasl, b"AUTH EXTERNAL " + UID_HEX) == [OK]


def test_endless_commands_disconnect() -> None:
    sasl = server()
    sasl.feed(b"\0")
    converse(sasl, *[b"CANCEL"] * MAX_COMMANDS)
    with pytest.raises(AuthError):
        converse(sasl, b"CANCEL")


def test_sd_bus_pipelines_its_whole_side_in_one_write() -> None:
    # sd-bus (bus_socket_start_auth_client): NUL, AUTH EXTERNAL with the uid,
    # NEGOTIATE_UNIX_FD, BEGIN, and then its Hello, without waiting for replies.
    hello = b"l\x01\x00\x01" + bytes(12)  # only the first bytes of the message stream
    sasl = server()
    out = sasl.feed(b"\0AUTH EXTERNAL " + UID_HEX + b"\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n" + hello)
    assert out == OK + b"AGREE_UNIX_FD\r\n"
    assert sasl.state is State.DONE and sasl.unix_fd
    assert sasl.leftover == hello


def test_pipelined_lines_split_at_every_byte() -> None:
    stream = (b"\0AUTH EXTERNAL\r\nDATA " + UID_HEX + b"\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n"
              + b"lmessage")
    sasl = server()
    out = b"".join(sasl.feed(stream[i:i + 1]) for i in range(stream.index(b"BEGIN") + 7))
    assert out == b"DATA\r\n" + OK + b"AGREE_UNIX_FD\r\n"
    assert sasl.state is State.DONE and sasl.leftover == b""


def test_feeding_after_begin_is_refused() -> None:
    sasl = server()
    sasl.feed(b"\0AUTH EXTERNAL " + UID_HEX + b"\r\nBEGIN\r\n")
    with pytest.raises(AuthError):
        sasl.feed(b"more")


def test_lone_lf_is_not_a_line_end() -> None:
    sasl = server()
    assert sasl.feed(b"\0AUTH EXTERNAL " + UID_HEX + b"\n") == b""
    assert sasl.state is State.WAIT_AUTH and sasl.commands == 0
