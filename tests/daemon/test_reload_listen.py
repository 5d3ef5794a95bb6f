"""A reload that would move the IKE sockets is refused with the file and keyword: the sockets,
the NAT-T port the forwarding process splits ESP in UDP on, and the ports the engine floats to
are fixed at start. Nothing of the new configuration is taken."""

from __future__ import annotations

import asyncio

import pytest

from tests.daemon.conftest import reload_beside_fake_forwarding, seed_daemon

LISTEN = "isakmp 198.18.0.1 [500];"


@pytest.mark.parametrize("edit, says", [
    (lambda t: t.replace(LISTEN, "isakmp 198.18.0.9 [500];"),
     "from 198.18.0.1[500] to 198.18.0.9[500]"),
    (lambda t: t.replace(LISTEN, f"{LISTEN}\n        isakmp_natt 198.18.0.1 [4500];"),
     "to 198.18.0.1[500], 198.18.0.1[4500]"),
    (lambda t: t.replace(LISTEN, f"{LISTEN}\n        isakmp_natt 198.18.0.1 [4501];"),
     "to 198.18.0.1[500], 198.18.0.1[4501]"),
])
def test_a_reload_that_moves_the_ike_sockets_is_refused(seed, edit, says):
    conf = seed / "racoon.conf"
    d = seed_daemon(seed)
    before = d.live.config
    conf.write_text(edit(conf.read_text()).replace("log notify;", "log debug;"))
    errors, seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert len(errors) == 1 and errors[0].startswith(f"{conf}: listen: "), errors
    assert says in errors[0] and "restart" in errors[0]
    assert d.live.config is before and seen == []  # not even the log level went


def test_an_unmoved_listen_section_reloads(seed):
    conf = seed / "racoon.conf"
    d = seed_daemon(seed)
    before = d.live.config
    conf.write_text(conf.read_text().replace("log notify;", "log debug;"))
    errors, _seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors == [] and d.live.config is not before
