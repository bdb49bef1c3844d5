"""A bus-activated echo service for tests/test_activation.py.

Run by bootbus from a .service file: connects to $DBUS_STARTER_ADDRESS with
bootbus.client, prints a line (the bus logs its stdout), owns the name given
as its argument and answers org.bootbus.test.Echo.Echo(s) -> s and
Starter() -> (s bus type, s address), until the bus disconnects it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

from bootbus.client import BUS, BUS_PATH, Client
from bootbus.wire import message as m

IFACE = "org.bootbus.test.Echo"


def reply(client: Client, call: m.Message, signature: str, args: tuple[object, ...]) -> None:
    client.send(m.build(m.METHOD_RETURN, client.next_serial(), reply_serial=call.serial,
                        destination=call.sender, signature=signature, args=args))


def main() -> int:
    name = sys.argv[1]
    client = Client(os.environ["DBUS_STARTER_ADDRESS"], timeout=None)
    print(f"echo service for {name} starting", flush=True)
    (code,) = client.call(BUS, BUS_PATH, BUS, "RequestName", "su", (name, 4))
    if code != 1:
        print(f"could not own {name}: {code}", file=sys.stderr, flush=True)
        return 1
    try:
        for msg in client.messages():
            if msg.type != m.METHOD_CALL or msg.interface != IFACE:
                continue
            if msg.member == "Echo":
                reply(client, msg, msg.signature, tuple(msg.args()))
            elif msg.member == "Starter":
                reply(client, msg, "ss", (os.environ.get("DBUS_STARTER_BUS_TYPE", ""),
                                          os.environ.get("DBUS_STARTER_ADDRESS", "")))
    except ConnectionError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
