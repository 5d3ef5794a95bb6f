"""The attacks an off-path attacker who can spoof UDP can mount on the engine, each shown to fail:
nothing unauthenticated stops, delays or tears down a tunnel, and what it costs is bounded."""

from __future__ import annotations

import gc
import random
from dataclasses import replace

import pytest

from ikev1 import crypto, limits
from ikev1.codec import (
    DeletePayload,
    Header,
    KePayload,
    NotifyPayload,
    decode_header,
    decode_payloads,
    encode_message,
)
from ikev1.constants import HEADER_LEN, Exchange, Notify, Proto
from ikev1.engine import Engine
from ikev1.events import NegotiationFailed, Phase1Down, Phase1Up, Phase2Up, Refused, SaDeleted
from ikev1.limits import (
    AGGRESSIVE_DH_BURST,
    HALF_OPEN_PER_SOURCE,
    HALF_OPEN_RESERVED,
    HALF_OPEN_SHARED,
    NOTIFY_BURST,
    NOTIFY_BURST_PER_SOURCE,
    NOTIFY_RATE,
)
from ikev1.policy import Phase1Proposal, RemotePolicy

from . import harness
from .harness import PSK, A, B, advance, events, gre_selector, make_config, of_type, pair, pump

ATTACKER_PORT = 31337


def _up(a: Engine, b: Engine, now: float = 0.0) -> tuple[Phase2Up, Phase2Up]:
    a.initiate(B, now, gre_selector(A), gre_selector(B))
    pump(a, b, now)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    return ua, ub


def _mirrored(ua: Phase2Up, ub: Phase2Up) -> bool:
    return ((ua.inbound.spi, ua.inbound.enc_key, ua.inbound.auth_key)
            == (ub.outbound.spi, ub.outbound.enc_key, ub.outbound.auth_key)
            and (ua.outbound.spi, ua.outbound.enc_key)
            == (ub.inbound.spi, ub.inbound.enc_key))


def _first_message(mode: str = "main", source: str = A, dest: str = B) -> bytes:
    """A real first message of `mode` from an engine at `source`, to be copied by forgers."""
    eng = Engine(make_config(source, dest, remote={"exchange_mode": (mode,)}),
                 rng=random.Random(7).randbytes)
    eng.initiate(dest, 0.0, gre_selector(source), gre_selector(dest))
    ((first, _, _),) = eng.datagrams_to_send()
    return first


def _forged(template: bytes, rng: random.Random) -> bytes:
    """The same first message under a random initiator cookie: a new exchange each time."""
    return rng.randbytes(8) + template[8:]


def _flood_addresses(count: int, rng: random.Random) -> list[str]:
    return [f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(count)]


# --- a spoofed first message never stands in for our own exchange --------------------------

def test_a_spoofed_mm1_from_the_peer_does_not_stop_our_own_initiation():
    a, b = pair()
    mm1 = _first_message(source=A, dest=B)
    rng = random.Random(1)
    b.receive_datagram(_forged(mm1, rng), (B, 500), (A, ATTACKER_PORT), 0.0)
    assert len(b.datagrams_to_send()) == 1 and len(b.phase1_sas()) == 1  # answered, half open
    b.initiate(A, 1.0, gre_selector(B), gre_selector(A))
    sent = b.datagrams_to_send()
    assert len(sent) == 1 and decode_header(sent[0][0]).exchange == Exchange.MAIN  # our MM1
    a.receive_datagram(sent[0][0], sent[0][2], sent[0][1], 1.0)
    pump(a, b, 1.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert _mirrored(ua, ub)


def test_spoofed_mm1s_once_a_minute_never_block_an_acquire():
    """The field report: one forged MM1 a minute, and every acquire timed out."""
    a, b = pair()
    mm1 = _first_message(source=A, dest=B)
    rng = random.Random(2)
    now = 0.0
    for minute in range(3):
        now = minute * 60.0
        b.receive_datagram(_forged(mm1, rng), (B, 500), (A, rng.randrange(1024, 65536)), now)
        b.datagrams_to_send()
        b.initiate(A, now + 1.0, gre_selector(B), gre_selector(A))
        pump(a, b, now + 1.0)
        assert of_type(events(b), Phase2Up), f"acquire {minute} did not come up"
        events(a)
        b.flush(now + 2.0)
        pump(a, b, now + 2.0)
        events(a), events(b)
    fails = [f for f in of_type(events(b), NegotiationFailed)
             if f.reason == "timeout waiting for phase 1"]
    assert fails == []


def test_a_spoofed_mm1_does_not_block_the_phase1_rekey():
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=1000),)
    a, b = pair({"proposals": props, "remote": {"lifetime_s": 1000, "rekey": "force"},
                 "sainfo": {"lifetime_s": 5000}},
                {"proposals": props, "sainfo": {"lifetime_s": 5000}})
    _up(a, b)
    forged = _forged(_first_message(source=B, dest=A), random.Random(3))
    a.receive_datagram(forged, (A, 500), (B, ATTACKER_PORT), 899.0)  # just before the rekey
    a.datagrams_to_send()
    advance(a, b, 899.0, 950.0)
    assert len(of_type(events(a), Phase1Up)) == 1  # the renewal came up on time


# --- a flood from many addresses, while a configured peer negotiates ------------------------

def _with_anonymous(config, *, modes=("main", "aggressive")):
    """The flooded side also has `remote anonymous`, so forged first messages get state."""
    anon = RemotePolicy("anonymous", config.remotes[0].proposals, exchange_mode=modes)
    return replace(config, remotes=(*config.remotes, anon))


@pytest.mark.parametrize("responder_is_flooded", [True, False], ids=["b-responds", "b-initiates"])
def test_a_flood_of_spoofed_mm1_and_am1_keeps_nobody_out(responder_is_flooded):
    a, b = pair()
    b.config = _with_anonymous(b.config)
    rng = random.Random(4)
    mm1, am1 = _first_message("main"), _first_message("aggressive")
    sources = _flood_addresses(500, rng)
    forged_sent = 0
    up_at = None
    # a minute of simulated time at 200 forged first messages per second, 12,000 in all: half
    # aggressive, a tenth of them spoofing the real peer's own address, random ports and cookies
    for tick in range(600):
        now = tick * 0.1
        for i in range(20):
            src = (A, rng.randrange(1024, 65536)) if i % 10 == 0 else (rng.choice(sources), 500)
            b.receive_datagram(_forged(am1 if i % 2 else mm1, rng), (B, 500), src, now)
            forged_sent += 1
        to_real = [d for d in b.datagrams_to_send() if d[2][0] == A and d[2][1] == 500]
        for dgram, local, peer in to_real:  # what the real peer gets of b's replies
            a.receive_datagram(dgram, peer, local, now)
        if tick == 50:  # five seconds into the flood
            if responder_is_flooded:
                a.initiate(B, now, gre_selector(A), gre_selector(B))
            else:
                b.initiate(A, now, gre_selector(B), gre_selector(A))
        if tick >= 50:
            pump(a, b, now)
            a.handle_timer(now)
            b.handle_timer(now)
            if up_at is None and of_type(events(a), Phase2Up):
                up_at = now
        assert len(b._phase1) <= HALF_OPEN_SHARED + HALF_OPEN_RESERVED + 2
    assert up_at is not None and up_at == 5.0, "the tunnel did not come up at once"
    assert forged_sent == 12000
    assert b.counters["half_open_evicted"] > 0 and b.counters["aggressive_paced"] > 0
    refused = of_type(events(b), Refused)
    assert len(refused) < 20  # folded per reason per minute, not one per datagram
    assert len(b._first_seen) <= HALF_OPEN_SHARED + HALF_OPEN_RESERVED
    assert set(b._peers) == {A}  # nothing unproven keeps a peer record


def test_the_shared_pool_and_the_per_source_room_evict_the_oldest():
    a, b = pair()
    b.config = _with_anonymous(b.config, modes=("main",))
    mm1 = _first_message()
    rng = random.Random(5)
    for _ in range(HALF_OPEN_PER_SOURCE + 3):  # one unconfigured address
        b.receive_datagram(_forged(mm1, rng), (B, 500), ("198.19.0.9", 500), 0.0)
    assert len(b._phase1) == HALF_OPEN_PER_SOURCE
    for addr in _flood_addresses(HALF_OPEN_SHARED * 2, rng):
        b.receive_datagram(_forged(mm1, rng), (B, 500), (addr, 500), 1.0)
    assert len(b._phase1) == HALF_OPEN_SHARED
    b.datagrams_to_send()
    # the configured peer's room is apart: the full shared pool takes none of it
    _up(a, b, 2.0)
    assert len(b._peers[A].phase1) == 1


def test_a_proven_exchange_is_never_evicted():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, local, peer),) = a.datagrams_to_send()
    b.receive_datagram(mm1, peer, local, 0.0)
    ((mm2, *_),) = b.datagrams_to_send()
    a.receive_datagram(mm2, local, peer, 0.0)
    ((mm3, *_),) = a.datagrams_to_send()
    b.receive_datagram(mm3, peer, local, 0.0)  # b's exchange is proven now
    mm4 = b.datagrams_to_send()
    rng = random.Random(6)
    for _ in range(HALF_OPEN_RESERVED * 3):  # a flood spoofing the peer's own address
        b.receive_datagram(_forged(mm1, rng), peer, (A, rng.randrange(1024, 65536)), 0.1)
    b.datagrams_to_send()
    for dgram, lo, pe in mm4:
        a.receive_datagram(dgram, pe, lo, 0.2)
    pump(a, b, 0.2)
    assert of_type(events(a), Phase2Up) and of_type(events(b), Phase2Up)


def test_exchanges_an_attacker_proves_from_its_own_addresses_shield_no_more_than_half(
        monkeypatch):
    """With psk.txt's `*`, anyone completes main mode 3 from an address of its own and so
    proves its exchange. Proven exchanges filling the shared pool must not leave a real
    anonymous peer's fresh exchange the only one that each forged first message can evict."""
    monkeypatch.setattr(limits, "HALF_OPEN_SHARED", 4 * HALF_OPEN_PER_SOURCE)  # fewer DHs
    b = Engine(make_config(B, A), rng=random.Random(2).randbytes)
    b.config = replace(_with_anonymous(b.config, modes=("main",)), psk={"*": PSK})
    for i in range(limits.HALF_OPEN_SHARED):  # the attacker's own addresses, no key needed
        src = f"198.19.1.{i // HALF_OPEN_PER_SOURCE + 1}"
        attacker = Engine(make_config(src, B, psk=b"any key"), rng=random.Random(i).randbytes)
        attacker.initiate(B, 0.0, gre_selector(src), gre_selector(B))
        for _ in range(2):  # MM1 -> MM2, MM3 -> MM4
            ((dgram, lo, pe),) = attacker.datagrams_to_send()
            b.receive_datagram(dgram, pe, lo, 0.0)
            ((reply, _, _),) = b.datagrams_to_send()
            attacker.receive_datagram(reply, lo, pe, 0.0)
    assert {p["state"] for p in b.phase1_sas()} == {"R_MM4"}
    roaming = "198.19.9.9"  # a real anonymous peer, with the `*` key
    c = Engine(make_config(roaming, B), rng=random.Random(3).randbytes)
    c.initiate(B, 0.1, gre_selector(roaming), gre_selector(B))
    ((mm1, lo, pe),) = c.datagrams_to_send()
    b.receive_datagram(mm1, pe, lo, 0.1)
    rng = random.Random(4)
    for addr in _flood_addresses(HALF_OPEN_PER_SOURCE, rng):  # a few forged first messages
        b.receive_datagram(_forged(_first_message(), rng), (B, 500), (addr, 500), 0.1)
    for dgram, local, peer in b.datagrams_to_send():  # main mode 2s to the forged addresses
        if peer[0] == roaming:
            c.receive_datagram(dgram, peer, local, 0.1)
    harness.relay(c, b, 0.1)
    assert of_type(events(c), Phase2Up)


# --- forged and reflected main-mode messages -------------------------------------------------

def _replace_payloads(dgram: bytes, change) -> bytes:
    hdr = decode_header(dgram)
    payloads = decode_payloads(hdr.next_payload, dgram[HEADER_LEN:hdr.length])
    return encode_message(hdr, change(payloads))


def _bad_ke(payloads: list) -> list:
    return [KePayload(bytes(len(p.data) - 1) + b"\x01") if isinstance(p, KePayload) else p
            for p in payloads]


def _no_ke(payloads: list) -> list:
    return [p for p in payloads if not isinstance(p, KePayload)]


@pytest.mark.parametrize("forge", [_bad_ke, _no_ke], ids=["bad-ke", "missing-ke"])
def test_forged_mm3_and_mm4_end_nothing(forge):
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, la, pb),) = a.datagrams_to_send()
    b.receive_datagram(mm1, pb, la, 0.0)
    ((mm2, *_),) = b.datagrams_to_send()
    b.receive_datagram(mm2, pb, la, 0.0)  # b's own message 2 sent back to it
    a.receive_datagram(mm2, la, pb, 0.0)
    ((mm3, *_),) = a.datagrams_to_send()
    b.receive_datagram(_replace_payloads(mm3, forge), pb, la, 0.0)  # a forged message 3 first
    assert b.datagrams_to_send() == [] and b.phase1_sas()[0]["state"] == "R_MM2"
    b.receive_datagram(mm3, pb, la, 0.0)
    ((mm4, *_),) = b.datagrams_to_send()
    a.receive_datagram(_replace_payloads(mm4, forge), la, pb, 0.0)  # a forged message 4 first
    assert a.datagrams_to_send() == [] and a.phase1_sas()[0]["state"] == "I_MM3"
    a.receive_datagram(mm4, la, pb, 0.0)
    pump(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert _mirrored(ua, ub) and not of_type(events(a), NegotiationFailed)
    assert b.counters["rejected"] + b.counters["crypto_errors"] >= 1


def test_each_forged_reply_is_undone_whole_so_the_real_one_still_completes():
    """A forged MM2 to our initiator (an on-path attacker could send one): the real one after
    it must still work, because the forged one left no trace."""
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, la, pb),) = a.datagrams_to_send()
    b.receive_datagram(mm1, pb, la, 0.0)
    ((mm2, *_),) = b.datagrams_to_send()
    bogus = mm2[:8] + bytes(7) + b"\x01" + mm2[16:]  # another responder cookie, an empty choice
    a.receive_datagram(_replace_payloads(bogus, lambda pls: pls[1:]), la, pb, 0.0)
    assert a.datagrams_to_send() == [] and a.phase1_sas()[0]["rcookie"] == "00" * 8
    a.receive_datagram(mm2, la, pb, 0.0)
    pump(a, b, 0.0)
    assert of_type(events(a), Phase2Up) and of_type(events(b), Phase2Up)


# --- cleartext notifies, deletes and INITIAL-CONTACT change nothing ---------------------------

def test_initial_contact_appended_to_cleartext_aggressive_mode_purges_nothing():
    aggressive = {"exchange_mode": ("aggressive",)}
    a, b = pair({"remote": aggressive}, {"remote": aggressive})
    _up(a, b)
    a2 = Engine(make_config(A, B, remote={**aggressive, "initial_contact": False}),
                rng=random.Random(9).randbytes)
    a2.initiate(B, 10.0, gre_selector(A), gre_selector(B))

    def tamper(dgram: bytes) -> bytes:
        hdr = decode_header(dgram)
        if hdr.exchange != Exchange.AGGRESSIVE or hdr.flags & 1:
            return dgram
        notify = NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, hdr.icookie + hdr.rcookie)
        return _replace_payloads(dgram, lambda pls: [*pls, notify])

    for _ in range(10):
        moved = False
        for src, dst in ((a2, b), (b, a2)):
            for dgram, lo, pe in src.datagrams_to_send():
                moved = True
                dst.receive_datagram(tamper(dgram), pe, lo, 10.0)
        if not moved:
            break
    evb = events(b)
    assert of_type(evb, Phase1Up) and of_type(evb, Phase2Up)
    assert not of_type(evb, SaDeleted) and not of_type(evb, Phase1Down)
    assert len(b.phase1_sas()) == 2 and len(b.phase2_sas()) == 2


def test_cleartext_deletes_with_the_right_cookies_delete_nothing():
    a, b = pair()
    ua, _ = _up(a, b)
    p1 = b._newest_p1(A)
    before = (b.phase1_sas(), b.phase2_sas())
    hdr = Header(p1.icookie, p1.rcookie, 0, Exchange.INFORMATIONAL, 0, 0x1234)
    for payload in (DeletePayload(Proto.ISAKMP, (p1.spi,)),
                    DeletePayload(Proto.ESP, (ua.inbound.spi.to_bytes(4, "big"),))):
        b.receive_datagram(encode_message(hdr, [payload]), (B, 500), (A, 500), 1.0)
    assert (b.phase1_sas(), b.phase2_sas()) == before and not events(b)
    assert b.datagrams_to_send() == []


# --- replies and events caused by unauthenticated input are capped --------------------------

def test_refused_first_messages_cost_one_event_a_minute_and_capped_replies():
    a, b = pair({"proposals": (Phase1Proposal("3des", "md5", 1),)})
    b.config = _with_anonymous(b.config, modes=("main",))
    mm1 = _first_message()
    mm1 = Engine(a.config, rng=random.Random(3).randbytes)
    mm1.initiate(B, 0.0)
    ((nothing_b_accepts, _, _),) = mm1.datagrams_to_send()
    rng = random.Random(10)
    sources = _flood_addresses(50, rng)
    for i in range(1000):
        b.receive_datagram(_forged(nothing_b_accepts, rng), (B, 500),
                           (sources[i % 50], 500), i / 1000)
    replies = b.datagrams_to_send()
    # a second's worth: each bucket's burst and its refill over that second
    assert len(replies) <= min(NOTIFY_BURST + NOTIFY_RATE, 50 * (NOTIFY_BURST_PER_SOURCE + 1))
    assert b.counters["replies_capped"] == 1000 - len(replies)
    (refused,) = of_type(events(b), Refused)
    assert (refused.reason, refused.folded) == ("NO-PROPOSAL-CHOSEN", 0)
    b.receive_datagram(_forged(nothing_b_accepts, rng), (B, 500), (sources[0], 500), 61.0)
    (refused,) = of_type(events(b), Refused)
    assert refused.folded == 999 and b.phase1_sas() == []


def test_aggressive_mode_diffie_hellman_work_is_paced():
    aggressive = {"exchange_mode": ("aggressive",)}
    a, b = pair({"remote": aggressive}, {"remote": aggressive})
    b.config = _with_anonymous(b.config)
    am1 = _first_message("aggressive")
    generated = []
    real_group = crypto.dh_group

    def counting(group):
        grp = real_group(group)

        class Counted:
            def generate(self, rng):
                generated.append(group)
                return grp.generate(rng)

            def __getattr__(self, name):
                return getattr(grp, name)
        return Counted()

    rng = random.Random(11)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crypto, "dh_group", counting)
        for addr in _flood_addresses(1000, rng):  # a thousand in one second
            b.receive_datagram(_forged(am1, rng), (B, 500), (addr, 500), 0.5)
    assert len(generated) <= AGGRESSIVE_DH_BURST + 1
    assert b.counters["aggressive_paced"] >= 1000 - AGGRESSIVE_DH_BURST - 1
    b.datagrams_to_send()
    a.initiate(B, 0.6, gre_selector(A), gre_selector(B))  # the configured peer's own bucket
    pump(a, b, 0.6)
    assert of_type(events(a), Phase2Up)


# --- reserved SPIs ----------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["initiator", "responder"])
def test_a_peer_choosing_a_reserved_spi_gets_no_half_pair(who, monkeypatch):
    a, b = pair()
    liar = b if who == "responder" else a
    monkeypatch.setattr(liar, "_new_spi", lambda: 255)  # RFC 4303 §2.1: 1..255 reserved
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    ea, eb = events(a), events(b)
    honest, honest_events = (a, ea) if who == "responder" else (b, eb)
    assert not of_type(honest_events, Phase2Up) and honest.phase2_sas() == []
    assert "reserved SPI" in [f.reason for f in of_type(honest_events, NegotiationFailed)]


# --- no key material in any repr --------------------------------------------------------------

def test_no_object_of_the_engine_shows_key_material_in_its_repr(monkeypatch):
    secrets: list[bytes] = [PSK]
    real_p1, real_esp = crypto.phase1_keys_psk, crypto.esp_keys

    def p1_keys(hash_name, psk, ni, nr, gxy, *rest):
        keys = real_p1(hash_name, psk, ni, nr, gxy, *rest)
        secrets.extend([gxy, keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e,
                        keys.enc_key])
        return keys

    def esp_keys(*args):
        enc, auth = real_esp(*args)
        secrets.extend([enc, auth] + ([args[-1]] if args[-1] else []))  # PFS g^xy last
        return enc, auth

    monkeypatch.setattr(crypto, "phase1_keys_psk", p1_keys)
    monkeypatch.setattr(crypto, "esp_keys", esp_keys)
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    wire = pump(a, b, 0.0, rounds=40)
    kept = [e for eng in (a, b) for e in events(eng)]  # the events a shell would hold
    assert len(secrets) > 10 and any(len(s) >= 128 for s in secrets)  # PFS g^xy is in
    seen, stack, reprs = set(), [a, b, *kept], []
    while stack:  # every object of ours reachable from the engines and their events
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        module = type(obj).__module__ or ""
        if module.split(".")[0] in ("ikev1", "pyike", "esp", "spd"):
            reprs.append(repr(obj))
        stack.extend(r for r in gc.get_referents(obj) if not isinstance(r, str | int | float))
    assert len(reprs) > 50
    for text in reprs:
        for secret in secrets:
            assert secret.hex() not in text and repr(secret)[2:-1] not in text
    assert wire  # the negotiation ran
