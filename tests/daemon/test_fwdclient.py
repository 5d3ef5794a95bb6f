"""The IKE process's client of the forwarding process, over a real pipe with a scripted far
end: replies find their request, acquires and expiries are handed on, and the far end's exit
fails what still waits and is reported once."""

from __future__ import annotations

import asyncio

from forward.events import Acquire
from pyike import pipe
from pyike.fwdclient import ForwardingClient


def _client(seen: list):
    client = ForwardingClient(lambda acquire: seen.append(("acquire", acquire)),
                              lambda spi, direction, kind: seen.append(("expire", spi, kind)),
                              lambda: seen.append(("after",)),
                              lambda unreachable: seen.append(("lost", unreachable)))
    ours, theirs = pipe.make_pipe()
    ours.setblocking(False)
    client.sock = ours
    return client, theirs


def test_replies_acquires_expiries_and_the_far_ends_exit():
    seen: list = []

    async def main():
        client, theirs = _client(seen)
        client.attach(asyncio.get_running_loop())
        query = asyncio.ensure_future(client.query("counters"))
        await asyncio.sleep(0)
        verb, req, what = pipe.recv(theirs)
        assert (verb, what) == ("query", "counters")
        pipe.send(theirs, "acquire", Acquire("198.18.0.1", "198.18.0.2", "tunnel",
                                             "10.0.1.0/24", "10.0.2.0/24"))
        pipe.send(theirs, "expire", 0x1234, "out", "soft")
        pipe.send(theirs, "reply", req + 1, "not for us")
        pipe.send(theirs, "reply", req, {"counters": {}})
        assert await asyncio.wait_for(query, 5) == {"counters": {}}
        waiting = asyncio.ensure_future(client.ask("tunnels", []))
        await asyncio.sleep(0)
        theirs.close()
        try:
            await asyncio.wait_for(waiting, 5)
        except RuntimeError as exc:
            return str(exc), client.sock
        return None, client.sock

    error, sock = asyncio.run(main())
    assert error == "forwarding process exited" and sock is None
    assert seen[:3] == [("acquire", Acquire("198.18.0.1", "198.18.0.2", "tunnel",
                                            "10.0.1.0/24", "10.0.2.0/24")),
                        ("expire", 0x1234, "soft"), ("after",)]
    assert seen.count(("lost", False)) == 1 and ("lost", True) not in seen


def test_a_send_without_a_pipe_is_dropped_and_a_failed_send_is_reported():
    seen: list = []
    client, theirs = _client(seen)
    theirs.close()
    client.send("remove", 1, "in")  # the far end is gone: the send fails
    assert seen == [("lost", True)]
    client.sock.close()
    client.sock = None
    client.send("remove", 2, "in")  # nothing to send on: nothing happens
    assert seen == [("lost", True)]
