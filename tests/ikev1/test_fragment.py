"""IKE fragmentation (ikev1.fragment): the fragment payload, the vendor ID, splitting, bounded
reassembly, and two engines negotiating in fragments as racoon does."""

from __future__ import annotations

import random
import struct
from dataclasses import replace

import pytest

from ikev1 import fragment, limits, vendor
from ikev1.codec import (
    CodecError,
    FragmentPayload,
    Header,
    VendorIdPayload,
    decode_header,
    decode_message,
    encode_message,
)
from ikev1.constants import HEADER_LEN, Exchange, Flag, Payload
from ikev1.engine import COUNTER_NAMES, Engine
from ikev1.events import Phase1Up, Phase2Up
from ikev1.fragment import Pool, Reassembler
from ikev1.sa import Drop
from ikev1.timers import DeadlineHeap

from .harness import A, B, advance, events, gre_selector, make_config, of_type, pump, seeded

IC, RC = b"\x11" * 8, b"\x22" * 8
SMALL = 120  # a fragment size that puts every phase-1 and quick-mode message in pieces


def _message(size: int, exchange: int = Exchange.MAIN, flags: int = 0, msgid: int = 0) -> bytes:
    body = bytes(random.Random(size).randrange(256) for _ in range(size - HEADER_LEN - 4))
    return encode_message(Header(IC, RC, 0, exchange, flags, msgid),
                          [VendorIdPayload(body)])


def _pieces(data: bytes) -> FragmentPayload:
    (piece,) = decode_message(data).payloads
    assert isinstance(piece, FragmentPayload)
    return piece


# --- the payload and the vendor ID ----------------------------------------------------------

def test_fragment_payload_round_trips_with_racoons_layout():
    piece = FragmentPayload(0x0102, 3, True, b"piece of a message")
    dgram = encode_message(Header(IC, RC, 0, Exchange.MAIN, 0, 0), [piece])
    assert dgram[16] == Payload.FRAGMENT == 132
    # generic header (next 0, reserved, length), fragment ID, number, flags with LAST, data
    assert dgram[HEADER_LEN:HEADER_LEN + 8] == struct.pack("!BBHHBB", 0, 0, 8 + 18, 0x0102, 3, 1)
    assert decode_message(dgram).payloads == (piece,)
    middle = FragmentPayload(7, 1, False, b"x")
    assert FragmentPayload.decode_body(middle.encode_body()) == middle


@pytest.mark.parametrize("body", [b"\x00\x01\x01\x00", b"\x00\x01\x00\x01data"])
def test_fragment_payload_without_data_or_numbered_zero_is_malformed(body):
    with pytest.raises(CodecError):
        FragmentPayload.decode_body(body)


def test_vendor_id_carries_racoons_capability_word():
    vid = fragment.vendor_id("main")
    assert vid == vendor.FRAGMENTATION + b"\x80\x00\x00\x00"
    assert fragment.vendor_id("aggressive") == vid
    assert vendor.vendor_name(vid) == "IKE FRAGMENTATION"
    assert fragment.peer_capable(vid, "main") and fragment.peer_capable(vid, "aggressive")
    cisco = vendor.FRAGMENTATION + b"\xc0\x00\x00\x00"
    assert fragment.peer_capable(cisco, "main")
    base_only = vendor.FRAGMENTATION + b"\x40\x00\x00\x00"
    assert not fragment.peer_capable(base_only, "main")
    assert not fragment.peer_capable(vendor.FRAGMENTATION, "main")  # no capability word
    assert not fragment.peer_capable(vendor.DPD + b"\x80\x00\x00\x00", "main")


def test_split_keeps_the_header_and_bounds_every_piece():
    msg = _message(1300, Exchange.QUICK, Flag.ENCRYPTION | Flag.COMMIT, msgid=0xABCD)
    pieces = fragment.split(msg, 9)
    assert len(pieces) == 3 and all(len(p) <= fragment.MAX_LEN - 4 for p in pieces)
    for i, dgram in enumerate(pieces):
        hdr = decode_header(dgram)
        assert (hdr.icookie, hdr.rcookie, hdr.exchange, hdr.message_id) == (IC, RC, 32, 0xABCD)
        assert hdr.flags == Flag.COMMIT  # the fragment payload itself is not encrypted
        piece = _pieces(dgram)
        assert (piece.frag_id, piece.number, piece.last) == (9, i + 1, i == 2)
    assert b"".join(_pieces(p).data for p in pieces) == msg
    with pytest.raises(ValueError):
        fragment.split(_message(1300), 1, max_len=fragment.OVERHEAD)


# --- reassembly -----------------------------------------------------------------------------

def _reassembler() -> tuple[Reassembler, DeadlineHeap, dict[str, int]]:
    heap, counters = DeadlineHeap(), dict.fromkeys(COUNTER_NAMES, 0)
    return Reassembler(heap, counters), heap, counters


def _set(msg: bytes, frag_id: int = 1, max_len: int = 200) -> list[FragmentPayload]:
    return [_pieces(p) for p in fragment.split(msg, frag_id, max_len)]


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_reassembly_in_any_order(order):
    r, heap, _ = _reassembler()
    msg = _message(900)
    pieces = _set(msg)
    if order == "reversed":
        pieces.reverse()
    elif order == "shuffled":
        random.Random(4).shuffle(pieces)
    got = [r.add("k", "sa", Pool.SA, p, 0.0) for p in pieces]
    assert got[:-1] == [None] * (len(pieces) - 1) and got[-1] == msg
    assert len(r) == 0 and heap.next_time() is None


def test_duplicates_are_dropped_and_a_resent_set_fills_the_gap():
    r, _, counters = _reassembler()
    msg = _message(900)
    first, second, *rest = _set(msg)
    assert r.add("k", "sa", Pool.SA, first, 0.0) is None
    with pytest.raises(Drop) as drop:
        r.add("k", "sa", Pool.SA, first, 0.0)
    assert drop.value.counter == "frag_duplicates"
    for p in rest:
        assert r.add("k", "sa", Pool.SA, p, 0.0) is None
    assert r.add("k", "sa", Pool.SA, second, 0.0) == msg
    assert counters["frag_conflicts"] == 0


def test_a_set_that_contradicts_itself_starts_over():
    r, _, counters = _reassembler()
    old, new = _set(_message(900)), _set(_message(700))
    r.add("k", "sa", Pool.SA, old[0], 0.0)
    r.add("k", "sa", Pool.SA, old[1], 0.0)
    for p in new:  # the same ID, other bytes under number 1: the old pieces go
        out = r.add("k", "sa", Pool.SA, p, 0.0)
    assert out == _message(700) and counters["frag_conflicts"] == 1
    r.add("k", "sa", Pool.SA, new[0], 0.0)
    beyond = FragmentPayload(1, len(new) + 1, False, b"more")
    r.add("k", "sa", Pool.SA, new[-1], 0.0)  # the end is known now
    r.add("k", "sa", Pool.SA, beyond, 0.0)  # a piece beyond it
    assert counters["frag_conflicts"] == 2 and len(r) == 1


def test_too_many_fragments_or_bytes_are_refused():
    r, _, _ = _reassembler()
    with pytest.raises(Drop) as drop:
        r.add("k", "sa", Pool.SA, FragmentPayload(1, limits.FRAGMENTS_PER_MESSAGE + 1, True,
                                                b"x"), 0.0)
    assert drop.value.counter == "frag_oversize" and len(r) == 0
    chunk = b"y" * 1000
    for n in range(1, limits.FRAGMENTED_MESSAGE_BYTES // 1000 + 1):
        assert r.add("k", "sa", Pool.SA, FragmentPayload(1, n, False, chunk), 0.0) is None
    with pytest.raises(Drop) as drop:
        r.add("k", "sa", Pool.SA, FragmentPayload(1, 30, False, chunk), 0.0)
    assert drop.value.counter == "frag_oversize" and len(r) == 0


def test_an_incomplete_message_is_given_up_at_its_timeout():
    r, heap, counters = _reassembler()
    r.add("k", "sa", Pool.SA, _set(_message(900))[0], 10.0)
    assert heap.next_time() == 10.0 + limits.REASSEMBLY_TIMEOUT_S
    assert heap.pop_due(10.0 + limits.REASSEMBLY_TIMEOUT_S - 0.1) == []
    (due,) = heap.pop_due(10.0 + limits.REASSEMBLY_TIMEOUT_S)
    r.expire(due)
    assert len(r) == 0 and counters["frag_timeouts"] == 1


def test_buffers_are_bounded_per_room_and_in_all_and_first_messages_apart():
    r, _, counters = _reassembler()
    piece = FragmentPayload(1, 1, False, b"z")
    for i in range(limits.REASSEMBLIES_PER_SA + 3):
        r.add(("sa", i), "one SA", Pool.SA, piece, float(i))
    assert len(r) == limits.REASSEMBLIES_PER_SA
    assert counters["frag_evicted"] == 3
    for i in range(limits.REASSEMBLIES_FIRST + 10):  # a flood of first messages, one per source
        r.add(("first", i), f"source {i}", Pool.FIRST, piece, 0.0)
    assert len(r) == limits.REASSEMBLIES_PER_SA + limits.REASSEMBLIES_FIRST
    held = [("sa", i) for i in range(limits.REASSEMBLIES_PER_SA + 3)]
    assert sum(r._live.get(k) is not None for k in held) == limits.REASSEMBLIES_PER_SA
    for i in range(limits.REASSEMBLIES + 5):
        r.add(("many", i), f"SA {i}", Pool.SA, piece, 0.0)
    assert len(r) == limits.REASSEMBLIES + limits.REASSEMBLIES_FIRST
    r.discard_room("SA 300")  # not there: nothing happens
    r.discard_room(f"SA {limits.REASSEMBLIES + 4}")
    assert len(r) == limits.REASSEMBLIES + limits.REASSEMBLIES_FIRST - 1


# --- two engines ----------------------------------------------------------------------------

def _engines(mode: str, frag_a: str, frag_b: str, fragment_len: int = SMALL
             ) -> tuple[Engine, Engine]:
    kw = {"exchange_mode": (mode,)}
    a = Engine(make_config(A, B, remote={**kw, "ike_frag": frag_a}), rng=seeded(1),
               fragment_len=fragment_len)
    b = Engine(make_config(B, A, remote={**kw, "ike_frag": frag_b}), rng=seeded(2),
               fragment_len=fragment_len)
    return a, b


def _fragments(seen: list, src: str) -> list[bytes]:
    return [d for d, s, _ in seen if s == src and decode_header(d).next_payload == 132]


def _messages(seen: list, src: str) -> list[bytes]:
    """What `src` sent, each fragmented message joined again (persend 1: one copy each)."""
    out, partial = [], {}
    for d, s, _ in seen:
        if s != src:
            continue
        if decode_header(d).next_payload != 132:
            out.append(d)
            continue
        piece = _pieces(d)
        pieces = partial.setdefault((d[:16], piece.frag_id), {})
        pieces[piece.number] = piece.data
        if piece.last:
            out.append(b"".join(pieces[n] for n in sorted(pieces)))
            del partial[(d[:16], piece.frag_id)]
    return out


def _vendor_ids(seen: list, src: str) -> list[bytes]:
    return [p.data for d in _messages(seen, src) if not decode_header(d).flags & Flag.ENCRYPTION
            for p in decode_message(d).payloads if isinstance(p, VendorIdPayload)]


def _negotiate(a: Engine, b: Engine, **kw) -> list:
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    seen = pump(a, b, 0.0, **kw)
    ea, eb = events(a), events(b)
    assert len(of_type(ea, Phase1Up)) == len(of_type(eb, Phase1Up)) == 1
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert ua.outbound == ub.inbound and ua.inbound == ub.outbound
    for eng in (a, b):
        assert eng.counters["internal_errors"] == eng.counters["malformed"] == 0
    return seen


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_forced_fragmentation_negotiates_both_phases(mode):
    a, b = _engines(mode, "force", "force")
    seen = _negotiate(a, b)
    assert all(len(d) <= SMALL for d, _, _ in seen)
    first = decode_header(seen[0][0])
    assert first.next_payload == 132 and first.rcookie == bytes(8)  # racoon: even message 1
    assert fragment.vendor_id(mode) in _vendor_ids(seen, A)  # announced, echoed
    assert fragment.vendor_id(mode) in _vendor_ids(seen, B)
    for eng, src in ((a, A), (b, B)):
        assert eng.counters["frag_out"] == len(_fragments(seen, src)) > 0
        assert eng.counters["frag_reassembled"] > 0
        exchanges = {decode_header(d).exchange for d in _fragments(seen, src)}
        assert Exchange.QUICK in exchanges  # every exchange under the SA goes in pieces
        assert len(eng._reassembly) == 0


def test_on_announces_and_fragments_only_once_the_peer_has():
    a, b = _engines("main", "on", "off")
    seen = _negotiate(a, b)
    first = decode_header(seen[0][0])
    assert first.next_payload == Payload.SA  # message 1 whole: the responder said nothing yet
    assert fragment.vendor_id("main") in _vendor_ids(seen, A)
    # racoon's responder echoes the announcement and fragments whatever its own ike_frag says
    assert fragment.vendor_id("main") in _vendor_ids(seen, B)
    assert _fragments(seen, A) and _fragments(seen, B)


@pytest.mark.parametrize(("frag_a", "frag_b"), [("off", "off"), ("off", "force")])
def test_nothing_is_fragmented_without_an_announcement(frag_a, frag_b):
    """racoon: `force` on the responder does nothing until the initiator announces."""
    a, b = _engines("main", frag_a, frag_b)
    seen = _negotiate(a, b)
    assert not _fragments(seen, A) and not _fragments(seen, B)
    assert not [v for v in _vendor_ids(seen, A) + _vendor_ids(seen, B)
                if v.startswith(vendor.FRAGMENTATION)]


def test_messages_within_the_size_go_whole_even_when_forced():
    a, b = _engines("main", "force", "force", fragment_len=fragment.MAX_LEN)
    seen = _negotiate(a, b)  # group 2: no message over 552 bytes
    assert not _fragments(seen, A) and not _fragments(seen, B)


def test_a_lost_fragment_comes_back_with_the_resend():
    a, b = _engines("main", "force", "force")
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    lost = []

    def deliver(dgram: bytes, src: str, dst: str) -> bool:
        hdr = decode_header(dgram)
        if (src == A and hdr.next_payload == 132 and hdr.rcookie != bytes(8) and not lost
                and _pieces(dgram).number == 2):
            lost.append(dgram)
            return False
        return True

    pump(a, b, 0.0, deliver=deliver)
    assert lost and not of_type(events(a), Phase1Up)
    advance(a, b, 0.0, 11.0)  # racoon's 10 s resend interval
    assert of_type(events(a), Phase1Up) and of_type(events(b), Phase1Up)
    assert b.counters["frag_duplicates"] > 0 and b.counters["frag_conflicts"] == 0


def test_a_partial_set_is_forgotten_at_its_timeout():
    a, b = _engines("main", "force", "force")
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    (piece, *_), = [[d for d, _, _ in a.datagrams_to_send()]]
    b.receive_datagram(piece, (B, 500), (A, 500), 0.0)
    assert len(b._reassembly) == 1 and b.get_timer() == limits.REASSEMBLY_TIMEOUT_S
    b.handle_timer(limits.REASSEMBLY_TIMEOUT_S)
    assert len(b._reassembly) == 0 and b.counters["frag_timeouts"] == 1


# --- hostile fragments ----------------------------------------------------------------------

def _frag_dgram(ic: bytes, rc: bytes, piece: FragmentPayload, exchange: int = Exchange.MAIN
                ) -> bytes:
    return encode_message(Header(ic, rc, 0, exchange, 0, 0), [piece])


def test_fragments_nobody_expects_fill_no_buffer():
    _, b = _engines("main", "force", "force")
    piece = FragmentPayload(1, 1, False, b"x" * 50)
    b.receive_datagram(_frag_dgram(IC, RC, piece), (B, 500), (A, 500), 0.0)  # no such SA
    b.receive_datagram(_frag_dgram(IC, bytes(8), piece), (B, 500), ("198.18.0.99", 500), 0.0)
    b.receive_datagram(_frag_dgram(IC, bytes(8), piece, Exchange.QUICK), (B, 500), (A, 500), 0.0)
    assert b.counters["unknown_sa"] == 3 and len(b._reassembly) == 0
    two = encode_message(Header(IC, bytes(8), 0, Exchange.MAIN, 0, 0), [piece, piece])
    b.receive_datagram(two, (B, 500), (A, 500), 0.0)
    b.receive_datagram(_frag_dgram(IC, bytes(8), piece)[:-60], (B, 500), (A, 500), 0.0)
    assert b.counters["malformed"] == 2 and len(b._reassembly) == 0
    assert b.get_timer() is None


@pytest.mark.parametrize("inner", ["other cookies", "another fragment", "other exchange",
                                   "short header"])
def test_a_reassembled_message_must_be_the_one_its_pieces_named(inner):
    _, b = _engines("main", "force", "force")
    msg = {
        "other cookies": encode_message(Header(b"\x33" * 8, bytes(8), 0, Exchange.MAIN, 0, 0),
                                        [VendorIdPayload(b"v" * 40)]),
        "another fragment": _frag_dgram(IC, bytes(8), FragmentPayload(1, 1, True, b"v" * 40)),
        "other exchange": encode_message(Header(IC, bytes(8), 0, Exchange.AGGRESSIVE, 0, 0),
                                         [VendorIdPayload(b"v" * 40)]),
        "short header": b"\x11" * 20,
    }[inner]
    b.receive_datagram(_frag_dgram(IC, bytes(8), FragmentPayload(5, 1, True, msg)),
                       (B, 500), (A, 500), 0.0)
    assert b.counters["malformed"] == 1 and b.counters["frag_reassembled"] == 0
    assert b.phase1_count() == 0 and len(b._reassembly) == 0


def test_a_flood_of_forged_first_fragments_leaves_an_exchange_in_fragments_alone():
    a, b = _engines("main", "force", "force")
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    rng = random.Random(7)
    for _ in range(2000):  # spoofed from the peer's own address, every cookie new
        forged = FragmentPayload(rng.randrange(65536), rng.randrange(1, 40), False,
                                 rng.randbytes(rng.randrange(1, 100)))
        b.receive_datagram(_frag_dgram(rng.randbytes(8), bytes(8), forged), (B, 500), (A, 500),
                           0.0)
        assert len(b._reassembly) <= limits.REASSEMBLIES_FIRST_NAMED  # a configured address
    pump(a, b, 0.0)
    assert of_type(events(a), Phase2Up) and of_type(events(b), Phase2Up)
    assert b.counters["internal_errors"] == 0


def test_mangled_fragments_never_break_the_engine():
    a, b = _engines("aggressive", "force", "force")
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    seen = pump(a, b, 0.0)
    rng = random.Random(11)
    for _ in range(3000):
        dgram, src, _ = rng.choice([s for s in seen if decode_header(s[0]).next_payload == 132])
        data = bytearray(dgram)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(HEADER_LEN, len(data))
            data[pos] = rng.randrange(256)
        target = b if src == A else a
        target.receive_datagram(bytes(data), ((B if src == A else A), 500), (src, 500), 1.0)
    for eng in (a, b):
        assert eng.counters["internal_errors"] == 0, eng.last_internal_error
        assert len(eng._reassembly) <= limits.REASSEMBLIES + limits.REASSEMBLIES_FIRST


def _with_anonymous(eng: Engine) -> Engine:
    """`remote anonymous` beside the peer's own section: first messages from anywhere taken."""
    (named,) = eng.config.remotes
    eng.config = replace(eng.config, remotes=(named, replace(named, remote="anonymous",
                                                             passive=True)))
    return eng


def _interleaved(a: Engine, b: Engine, flood, *, phase: int) -> list:
    """Carry a's and b's traffic, and after the first fragment of each message a sends in
    `phase` (1: message 1 of main mode; 2: quick mode), `flood()`'s datagrams to b before the
    rest of its pieces; the events of both."""
    for _ in range(40):
        out = [(eng, x) for eng in (a, b) for x in eng.datagrams_to_send()]
        if not out:
            break
        started = set()
        for eng, (dgram, local, peer) in out:
            target = b if eng is a else a
            hdr = decode_header(dgram)
            if (eng is a and hdr.next_payload == 132 and (hdr.exchange == Exchange.QUICK)
                    == (phase == 2) and started):
                for forged, src in flood():
                    b.receive_datagram(forged, (B, 500), (src, 500), 0.0)
                b.datagrams_to_send()
            target.receive_datagram(dgram, peer, local, 0.0)
            if eng is a and hdr.next_payload == 132:
                started.add(hdr.exchange)
    return events(a) + events(b)


def test_a_flood_of_first_fragments_from_anywhere_evicts_no_configured_peers_message():
    """A fragmented first message from a `remote ADDRESS` peer is reassembled in a room that
    first fragments from anonymous sources cannot empty, and that a few spoofed from its own
    address do not empty either."""
    a, b = _engines("main", "force", "force")
    _with_anonymous(b)
    rng = random.Random(21)

    def flood():
        for i in range(3 * limits.REASSEMBLIES_FIRST):
            src = f"198.19.{i // 250}.{i % 250 + 1}" if i % 40 else A  # a few "from" a
            piece = FragmentPayload(rng.randrange(65536), 1, False, rng.randbytes(60))
            yield _frag_dgram(rng.randbytes(8), bytes(8), piece), src

    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    evs = _interleaved(a, b, flood, phase=1)
    assert len(of_type(evs, Phase2Up)) == 2, b.counters
    assert b.counters["frag_evicted"] > 0  # the flood did fill what it may


def test_fragments_under_cookies_anyone_can_get_evict_no_established_sas_message():
    """An attacker under `remote anonymous` gets the cookies of exchanges it opens from
    addresses of its own (message 2 tells them) and may fill buffers under them: not those of
    an ISAKMP SA with an authenticated peer."""
    a, b = _engines("main", "force", "force")
    _with_anonymous(b)
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    assert len(of_type(_interleaved(a, b, list, phase=1), Phase1Up)) == 2
    rng = random.Random(22)
    template = _first_message_whole()
    opened = []
    for i in range(limits.REASSEMBLIES):  # half-open exchanges of the attacker's addresses
        src = f"198.19.{i // 8}.{i % 8 + 1}"
        b.receive_datagram(rng.randbytes(8) + template[8:], (B, 500), (src, 500), 0.0)
        ((mm2, _, _),) = b.datagrams_to_send()
        opened.append((mm2[:16], src))

    def flood():
        for cookies, src in opened:
            for _ in range(limits.REASSEMBLIES_PER_SA):
                piece = FragmentPayload(rng.randrange(65536), 1, False, rng.randbytes(60))
                yield _frag_dgram(cookies[:8], cookies[8:], piece), src

    a.initiate(B, 1.0, gre_selector(B), gre_selector(A))  # other selectors: a new quick mode
    evs = _interleaved(a, b, flood, phase=2)
    assert len(of_type(evs, Phase2Up)) == 2, b.counters
    assert b.counters["frag_evicted"] > 0


def _first_message_whole() -> bytes:
    """A main mode 1 of an engine that does not fragment, for forgers to copy."""
    eng = Engine(make_config("198.19.0.1", B), rng=seeded(9))
    eng.initiate(B, 0.0, gre_selector("198.19.0.1"), gre_selector(B))
    ((first, _, _),) = eng.datagrams_to_send()
    return first
