"""Choosing the `remote` section for a peer: by address first, then `anonymous`, across reloads."""

from __future__ import annotations

from dataclasses import replace

from ikev1.engine import Engine
from ikev1.policy import Phase1Proposal, RemotePolicy

from .harness import make_config

PROPOSALS = (Phase1Proposal("aes", "sha1", 14),)


def _remote(address: str, **kw) -> RemotePolicy:
    return RemotePolicy(address, PROPOSALS, **kw)


def test_address_section_wins_over_anonymous_and_first_duplicate_wins() -> None:
    many = tuple(_remote(f"198.18.3.{i}") for i in range(1, 200))
    anonymous = _remote("anonymous", rekey="off")
    first = _remote("198.18.5.5", rekey="force")
    later = _remote("198.18.5.5", rekey="off")
    config = replace(make_config("198.18.0.2", "198.18.0.1"),
                     remotes=(anonymous, *many, first, later, _remote("gw.example")))
    engine = Engine(config)
    assert engine._remote_for("198.18.5.5") is first
    assert engine._remote_for("198.18.3.150") is many[149]
    assert engine._remote_for("198.18.9.9") is anonymous
    assert engine._remote_for("not an address") is anonymous
    assert engine._remote_for("198.18.3.150") is many[149]  # the index is reused


def test_no_anonymous_section_means_no_match() -> None:
    config = replace(make_config("198.18.0.2", "198.18.0.1"), remotes=(_remote("198.18.5.5"),))
    engine = Engine(config)
    assert engine._remote_for("198.18.5.6") is None
    assert engine._remote_for("198.18.5.5") is config.remotes[0]


def test_reconfigure_and_direct_replacement_use_the_new_remotes() -> None:
    old = _remote("198.18.5.5", rekey="off")
    new = _remote("198.18.5.5", rekey="force")
    config = replace(make_config("198.18.0.2", "198.18.0.1"), remotes=(old,))
    engine = Engine(config)
    assert engine._remote_for("198.18.5.5") is old
    engine.reconfigure(replace(config, remotes=(new,)), 1.0)
    assert engine._remote_for("198.18.5.5") is new
    engine.config = replace(config, remotes=(_remote("anonymous"),))
    assert engine._remote_for("198.18.5.5") is engine.config.remotes[0]
