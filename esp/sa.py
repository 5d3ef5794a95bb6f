"""One ESP security association in transport mode (RFC 4303): seal and open.

Wire format (RFC 4303 §2): SPI(4) | Sequence Number(4) | IV | ciphertext | ICV, where the
ciphertext covers payload | padding | pad length(1) | next header(1).

Hot path. Every cipher and MAC object is built once, at install:
- Seal feeds a persistent CBC encryptor a fresh random block R before the plaintext (the
  explicit-IV construction of TLS 1.1, RFC 4346 §6.2.3.2). The first output block,
  E(R xor previous-state), is unpredictable and goes on the wire as the IV; the rest is plain
  CBC chained from it, so the peer decrypts standard ESP.
- Open feeds a persistent CBC decryptor IV | ciphertext and drops the first output block: CBC
  decryption of block i only needs ciphertext block i-1, which for the first real block is the IV.
- The HMAC is a keyed template copied per packet. The ICV is checked in constant time before
  anything is decrypted, and the replay window moves only after it verified.
Both persistent contexts are only ever fed whole blocks, so they stay aligned across packets.

Two ICV lengths for one algorithm. A negotiated HMAC-SHA-256 is 128 bits on the wire for
strongSwan and libreswan (RFC 4868 §2.3) and 96 bits for a Linux racoon, whose PF_KEY SAs use
the older truncation; IKEv1 names both the same. Such an SA (AuthSpec.other_icv_size) opens
either length: the two differ by 4 bytes and the cipher's block is at least 8, so the packet's
length alone says which ICV it carries and no packet costs two HMACs. Until the peer's first
verified packet arrives, the outbound SA of the pair also makes the packet with the other
length (`alternate`, same sequence number) for the caller to send after it; the peer drops the
one it cannot verify, before its replay window moves (RFC 4303 §3.4.3). After that packet the
outbound SA sends only the peer's length. Nothing unauthenticated can choose it.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from esp.algorithms import CipherSpec, auth_spec, cipher_spec
from esp.replay import OK, REPLAYED, ReplayWindow

SEQ_MAX = 0xFFFFFFFF  # RFC 4303 §3.3.3: without ESN the counter must not cycle
# An outbound SA asks to be rekeyed (soft) this many packets before its counter runs out.
SEQ_SOFT_MARGIN = 1 << 22
NEXT_HEADER_NONE = 59  # RFC 4303 §2.6: dummy packet, discarded by the receiver
_RANDOM_POOL = 4096  # bytes of os.urandom drawn at a time for per-packet random blocks
# RFC 4303 §2.4: the padding bytes are 1, 2, 3, ...; index by pad length.
_PAD = tuple(bytes(range(1, n + 1)) for n in range(256))
_CTR_FIRST_BLOCK = (1).to_bytes(4, "big")  # RFC 3686 §4: the block counter starts at one


class EspDrop(enum.Enum):
    """Why seal() or open() produced no packet."""

    MALFORMED = "malformed"  # too short, misaligned, wrong SPI, bad padding
    ICV_FAILURE = "icv-failure"
    REPLAYED = "replayed"  # already inside the window
    TOO_OLD = "too-old"  # left of the window
    DUMMY = "dummy"  # verified, but next header 59: discard quietly
    EXPIRED = "expired"  # hard lifetime reached
    SEQ_EXHAUSTED = "seq-exhausted"  # outbound counter at 2^32-1: rekey needed
    WRONG_DIRECTION = "wrong-direction"  # seal on an inbound SA or open on an outbound one
    UNKNOWN_SPI = "unknown-spi"  # for callers that look the SA up first


@dataclass(frozen=True)
class Lifetime:
    """Soft and hard limits; 0 or None means unlimited (setkey/PF_KEY convention)."""

    soft_s: float | None = None
    hard_s: float | None = None
    soft_bytes: int | None = None
    hard_bytes: int | None = None


@dataclass(frozen=True)
class EspCounters:
    packets: int
    bytes: int
    replay_drops: int
    icv_failures: int
    malformed: int
    expired_drops: int
    dummies: int


def _ctr_functions(cspec: CipherSpec, keymat: bytes
                   ) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """seal's and open's body functions for AES-CTR (RFC 3686), shaped like CBC's `update`:
    each takes IV-sized bytes, then the rest, and gives back the IV, then the rest transformed.

    RFC 3686 §5.1: the key material ends with the 4-byte nonce; the counter block is
    nonce | IV | block counter from 1. The IV must never repeat under one key (§2.1), and a
    hand-keyed SA keeps its key across restarts: so the IV is a 64-bit counter started at a
    random value at install, not the sequence number, and seal ignores the random bytes it is
    given in front."""
    key, nonce = keymat[:-4], keymat[-4:]
    algorithm = cspec.factory(key)
    counter = [int.from_bytes(os.urandom(8), "big")]
    iv_size = cspec.iv_size

    def encrypt(data: bytes) -> bytes:
        value = counter[0] = (counter[0] + 1) & 0xFFFFFFFFFFFFFFFF
        iv = value.to_bytes(8, "big")
        stream = Cipher(algorithm, modes.CTR(nonce + iv + _CTR_FIRST_BLOCK)).encryptor()
        return iv + stream.update(data[iv_size:])

    def decrypt(data: bytes) -> bytes:
        iv = data[:iv_size]
        stream = Cipher(algorithm, modes.CTR(nonce + iv + _CTR_FIRST_BLOCK)).decryptor()
        return iv + stream.update(data[iv_size:])

    return encrypt, decrypt


def _limit(value: float | None) -> float:
    return value if value else math.inf


class EspSA:
    """One direction of an ESP SA. Build it at install; seal()/open() per packet."""

    __slots__ = (
        "spi", "src", "dst", "enc_alg", "enc_key", "auth_alg", "auth_key", "direction", "mode",
        "lifetime", "created", "first_used", "seq", "replay",
        "packets", "bytes", "replay_drops", "icv_failures", "malformed", "expired_drops",
        "dummies",
        "alternate", "_other_icv", "_partner",
        "_bs", "_iv", "_icv", "_fixed", "_min_len", "_spi_bytes", "_enc", "_dec", "_mac",
        "_hard_at", "_hard_bytes", "_soft_at", "_soft_bytes", "_trailers", "_pool", "_pool_at",
    )

    def __init__(
        self,
        spi: int,
        src: str,
        dst: str,
        enc_alg: str,
        enc_key: bytes,
        auth_alg: str,
        auth_key: bytes,
        *,
        direction: str,
        replay_window: int = 1024,
        lifetime: Lifetime | None = None,
        now: float = 0.0,
        mode: str = "transport",
    ) -> None:
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        if mode not in ("transport", "tunnel"):
            raise ValueError(f"mode must be 'transport' or 'tunnel', not {mode!r}")
        if not 256 <= spi <= SEQ_MAX:
            # RFC 4303 §2.1: SPIs 1-255 are reserved by IANA, 0 is local-only.
            raise ValueError(f"SPI {spi:#x} is outside 256..2^32-1")
        cspec = cipher_spec(enc_alg, enc_key)
        aspec = auth_spec(auth_alg, auth_key)
        self.spi = spi
        self.src = str(ipaddress.ip_address(src))
        self.dst = str(ipaddress.ip_address(dst))
        self.enc_alg = enc_alg
        self.enc_key = bytes(enc_key)
        self.auth_alg = auth_alg
        self.auth_key = bytes(auth_key)
        self.direction = direction
        # RFC 4301 §4.4.2.1: the SAD's protocol mode. seal()/open() are the same in both; the
        # forwarding core decides by it what an opened packet may be and where it goes.
        self.mode = mode
        self.lifetime = lifetime or Lifetime()
        self.created = now
        self.first_used: float | None = None
        self.seq = 0  # outbound: last number sent; the first packet carries 1
        self.replay = ReplayWindow(replay_window)
        self.packets = self.bytes = 0
        self.replay_drops = self.icv_failures = self.malformed = 0
        self.expired_drops = self.dummies = 0

        bs = cspec.block_size
        self._bs = bs
        self._iv = cspec.iv_size or bs
        self._set_icv(aspec.icv_size)
        # inbound: the other length it also opens; outbound: the other length it also sends,
        # until its inbound partner settles it (see the module docstring). 0: none. Only for
        # block ciphers: there the 4 bytes between the lengths cannot both be aligned.
        self._other_icv = aspec.other_icv_size if bs >= 8 else 0
        self._partner: EspSA | None = None  # inbound: the outbound SA to settle
        self.alternate: bytes | None = None  # outbound: the last sealed packet, other ICV
        self._spi_bytes = spi.to_bytes(4, "big")
        if cspec.mode == "ctr":
            self._enc, self._dec = _ctr_functions(cspec, self.enc_key)
        else:
            # The starting chaining value is never seen: every packet begins with a random block.
            cipher = Cipher(cspec.factory(self.enc_key), modes.CBC(os.urandom(bs)))
            self._enc = cipher.encryptor().update
            self._dec = cipher.decryptor().update
        self._mac = crypto_hmac.HMAC(self.auth_key, aspec.hash())
        lt = self.lifetime
        self._soft_at = now + _limit(lt.soft_s)
        self._hard_at = now + _limit(lt.hard_s)
        self._soft_bytes = _limit(lt.soft_bytes)
        self._hard_bytes = _limit(lt.hard_bytes)
        self._trailers: dict[int, tuple[bytes, ...]] = {}
        self._pool = b""
        self._pool_at = _RANDOM_POOL

    # -- per packet -------------------------------------------------------------------------

    def seal(self, payload: bytes, next_header: int, now: float) -> bytes | EspDrop:
        """The ESP packet (SPI .. ICV, no IP header) carrying `payload`, or why not."""
        if self.direction != "out":
            return EspDrop.WRONG_DIRECTION
        if now >= self._hard_at or self.bytes >= self._hard_bytes:
            self.expired_drops += 1
            return EspDrop.EXPIRED
        seq = self.seq
        if seq >= SEQ_MAX:
            self.expired_drops += 1
            return EspDrop.SEQ_EXHAUSTED
        seq += 1
        self.seq = seq
        trailers = self._trailers.get(next_header)
        if trailers is None:
            trailers = self._make_trailers(next_header)
        n = len(payload)
        at = self._pool_at
        if at >= _RANDOM_POOL:
            self._pool = os.urandom(_RANDOM_POOL)
            at = 0
        bs = self._bs
        iv = self._iv
        self._pool_at = at + iv
        body = self._enc(b"".join((self._pool[at:at + iv], payload, trailers[n % bs])))
        packet = self._spi_bytes + seq.to_bytes(4, "big") + body  # SPI .. ciphertext
        mac = self._mac.copy()
        mac.update(packet)
        self.packets += 1
        self.bytes += n
        if self.first_used is None:
            self.first_used = now
        digest = mac.finalize()
        if self._other_icv:
            self.alternate = packet + digest[:self._other_icv]
        return packet + digest[:self._icv]

    def open(self, packet: bytes, now: float) -> tuple[int, bytes] | EspDrop:
        """(next header, payload) from an ESP packet (SPI .. ICV), or why it was dropped."""
        if self.direction != "in":
            return EspDrop.WRONG_DIRECTION
        n = len(packet)
        bs = self._bs
        icv = self._icv
        if n < self._min_len or (n - self._fixed) % bs or packet[:4] != self._spi_bytes:
            icv = self._other_icv
            if (not icv or n < 8 + icv + self._iv + bs or (n - 8 - icv) % bs
                    or packet[:4] != self._spi_bytes):
                self.malformed += 1
                return EspDrop.MALFORMED
        if now >= self._hard_at or self.bytes >= self._hard_bytes:
            self.expired_drops += 1
            return EspDrop.EXPIRED
        seq = int.from_bytes(packet[4:8], "big")
        replay = self.replay
        if seq <= replay.top:  # a number right of the window is always new: skip the check
            verdict = replay.check(seq)
            if verdict != OK:
                self.replay_drops += 1
                return EspDrop.REPLAYED if verdict == REPLAYED else EspDrop.TOO_OLD
        end = n - icv
        mac = self._mac.copy()
        mac.update(packet[:end])
        # RFC 4303 §3.4.4: integrity first, in constant time, before any decryption.
        if not hmac.compare_digest(mac.finalize()[:icv], packet[end:]):
            self.icv_failures += 1
            return EspDrop.ICV_FAILURE
        replay.accept(seq)
        if self._partner is not None or icv != self._icv:
            self._peer_uses(icv)
        plain = self._dec(packet[8:end])  # first block is junk: see the module docstring
        pad_len = plain[-2]
        stop = len(plain) - 2 - pad_len
        iv = self._iv
        if stop < iv or plain[stop:-2] != _PAD[pad_len]:
            self.malformed += 1
            return EspDrop.MALFORMED
        next_header = plain[-1]
        if next_header == NEXT_HEADER_NONE:
            self.dummies += 1
            return EspDrop.DUMMY
        self.packets += 1
        self.bytes += stop - iv
        if self.first_used is None:
            self.first_used = now
        return next_header, plain[iv:stop]

    # -- the ICV length of a two-length algorithm (module docstring) ---------------------------

    def _set_icv(self, size: int) -> None:
        self._icv = size
        self._fixed = 8 + size  # SPI, sequence number, ICV
        # IV plus at least one aligned unit (pad length, next header)
        self._min_len = self._fixed + self._iv + self._bs

    def pair_with(self, outbound: EspSA) -> None:
        """Inbound SA: the outbound SA of the same negotiation, which sends both ICV lengths
        until this one has verified a packet from the peer."""
        if self.direction != "in" or outbound.direction != "out":
            raise ValueError("pair_with() takes the inbound SA and its outbound partner")
        if self._other_icv and outbound._other_icv:
            self._partner = outbound

    def _peer_uses(self, size: int) -> None:
        """A verified packet carried a `size`-byte ICV: open that length first from now on,
        and tell the outbound partner to send only that."""
        if size != self._icv:
            self._other_icv = self._icv
            self._set_icv(size)
        partner, self._partner = self._partner, None
        if partner is not None:
            partner._settle(size)

    def _settle(self, size: int) -> None:
        self._set_icv(size)
        self._other_icv = 0
        self.alternate = None

    @property
    def icv_settled(self) -> bool:
        """Outbound: whether it sends one ICV length only (always, but for a two-length
        algorithm before the peer's first packet)."""
        return not self._other_icv if self.direction == "out" else self._partner is None

    def _make_trailers(self, next_header: int) -> tuple[bytes, ...]:
        """Padding | pad length | next header for each payload length modulo the block size."""
        if not 0 <= next_header <= 255:
            raise ValueError(f"next header {next_header} is not a protocol number")
        bs = self._bs
        trailers = []
        for rem in range(bs):
            pad_len = (-(rem + 2)) % bs  # RFC 4303 §2.4: align the trailer to the block size
            trailers.append(_PAD[pad_len] + bytes((pad_len, next_header)))
        table = self._trailers[next_header] = tuple(trailers)
        return table

    # -- state, for the SAD, dumps and the daemon -----------------------------------------------

    @property
    def counters(self) -> EspCounters:
        return EspCounters(
            self.packets, self.bytes, self.replay_drops, self.icv_failures, self.malformed,
            self.expired_drops, self.dummies,
        )

    @property
    def block_size(self) -> int:
        return self._bs

    @property
    def icv_size(self) -> int:
        return self._icv

    def lifetime_state(self, now: float) -> str:
        """'mature', 'dying' (soft limit reached: rekey) or 'dead' (hard: seals/opens nothing),
        the state names setkey -D prints."""
        if now >= self._hard_at or self.bytes >= self._hard_bytes:
            return "dead"
        if self.direction == "out" and self.seq >= SEQ_MAX:
            return "dead"
        if now >= self._soft_at or self.bytes >= self._soft_bytes:
            return "dying"
        if self.direction == "out" and self.seq >= SEQ_MAX - SEQ_SOFT_MARGIN:
            return "dying"
        return "mature"

    def __repr__(self) -> str:
        return (
            f"EspSA(spi={self.spi:#010x}, {self.src}->{self.dst}, {self.direction}, "
            f"{self.enc_alg}/{self.auth_alg})"
        )
