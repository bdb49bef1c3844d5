"""A bus-activated service that starts, then waits at a gate before owning its name.

Run by bootbus from a .service file written by tests/test_survive_reexec.py:
``gated_service.py NAME FIFO``. It prints a line (the bus logs its stdout),
blocks opening FIFO until the test opens it for writing, prints another line,
then connects through $DBUS_STARTER_ADDRESS, owns NAME and answers
org.bootbus.test.Echo.Echo(s) -> s and Pid() -> u until the bus disconnects it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

from bootbus.client import BUS, BUS_PATH, Client
from bootbus.wire import message as m

IFACE = "org.bootbus.test.Echo"


def main() -> int:
    name, fifo = sys.argv[1], sys.argv[2]
    print(f"gated service {name} waiting at its gate", flush=True)
    with open(fifo, "rb") as gate:
        gate.read()
    print(f"gated service {name} passed its gate", flush=True)
    client = Client(os.environ["DBUS_STARTER_ADDRESS"], timeout=None)
    (code,) = client.call(BUS, BUS_PATH, BUS, "RequestName", "su", (name, 4))
    if code != 1:
        print(f"could not own {name}: {code}", file=sys.stderr, flush=True)
        return 1
    try:
        for msg in client.messages():
            if msg.type != m.METHOD_CALL or msg.interface != IFACE:
                continue
            signature, args = ((msg.signature, tuple(msg.args())) if msg.member == "Echo"
                               else ("u", (os.getpid(),)))
            client.send(m.build(m.METHOD_RETURN, client.next_serial(), reply_serial=msg.serial,
                                destination=msg.sender, signature=signature, args=args))
    except ConnectionError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
