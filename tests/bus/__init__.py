"""Ring 1 of bootbus.bus: match rules, the name registry and the router with fake peers.

The router tests drive a real :class:`bootbus.bus.router.Bus` with the real
driver; a "peer" is a :class:`bootbus.bus.peer.Peer` whose output queue the test
reads back through the real framer, exactly as a client would read its socket.
"""
