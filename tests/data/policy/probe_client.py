"""A D-Bus client driven over stdin/stdout, so a test can act as another uid.

Usage: probe_client.py ADDRESS. Reads one JSON command per line, answers one
JSON line each. Commands:
  {"op": "own", "name": N}                          -> {"ok": bool, "error": name|null}
  {"op": "call", "dest", "path", "iface", "member",
   "signature"?, "body"?}                           -> {"ok": bool, "error", "text"}
  {"op": "match", "rule": R}                        -> {"ok": bool, ...}
  {"op": "collect"}                                 -> {"signals": [[iface, member], ...]}
  {"op": "whoami"}                                  -> {"uid", "gid", "groups", "unique"}
Needs only jeepney; the test chooses the uid and groups with subprocess.
"""

import json
import os
import sys
from typing import Any

from jeepney import DBusAddress, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from jeepney.low_level import HeaderFields, Message

TIMEOUT = 5.0


def main() -> None:
    conn = open_dbus_connection(sys.argv[1])
    pending: list[Message] = []

    def call(msg: Message) -> dict[str, Any]:
        serial = next(conn.outgoing_serial)
        conn.send(msg, serial=serial)
        while True:
            reply = conn.receive(timeout=TIMEOUT)
            if reply.header.fields.get(HeaderFields.reply_serial) != serial:
                pending.append(reply)
                continue
            if reply.header.message_type == MessageType.error:
                text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
                return {"ok": False, "error": reply.header.fields[HeaderFields.error_name],
                        "text": text}
            return {"ok": True, "error": None, "body": list(reply.body)}

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "own":
            answer = call(message_bus.RequestName(cmd["name"]))
        elif op == "call":
            target = DBusAddress(cmd["path"], cmd["dest"], cmd.get("iface"))
            answer = call(new_method_call(target, cmd["member"], cmd.get("signature"),
                                          tuple(cmd.get("body", ()))))
        elif op == "match":
            answer = call(message_bus.AddMatch(cmd["rule"]))
        elif op == "collect":
            call(message_bus.GetId())
            answer = {"signals": [
                [m.header.fields.get(HeaderFields.interface),
                 m.header.fields.get(HeaderFields.member)]
                for m in pending if m.header.message_type == MessageType.signal]}
            pending.clear()
        elif op == "whoami":
            answer = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                      "unique": conn.unique_name}
        else:
            answer = {"ok": False, "error": f"unknown op {op}"}
        print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    main()
