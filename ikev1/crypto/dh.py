"""Diffie-Hellman groups for IKEv1: MODP 1, 2, 5 and 14-18, ECP 19-21.

Public values are fixed length on the wire (RFC 2409 §5: g^x is padded with leading zeros to the
prime's length); ECP public values are x || y and the shared secret is x alone (RFC 5903 §7).
Private values are drawn from the caller's rng so that a seeded engine is reproducible.

Every exponentiation with a private value runs in constant time: OpenSSL (BN_FLG_CONSTTIME on the
private key) for the named MODP groups and the curves, GMP's mpz_powm_sec (through gmpy2) for the
two RFC 2409 groups, which OpenSSL cannot load cheaply.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import gmpy2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dh, ec
from cryptography.utils import CryptographyDeprecationWarning

from .errors import DHError

Rng = Callable[[int], bytes]

# MODP primes. Group 1 and 2: RFC 2409 §6.1/§6.2; group 5: RFC 3526 §2; groups 14-18: RFC 3526
# §3-§7. Each is 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) * pi) + offset), generator 2.
_MODP_PRIMES: dict[int, tuple[str, ...]] = {
    1: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF"
    ),
    2: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
    ),
    5: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"
    ),
    14: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
    ),
    15: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
    ),
    16: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF"
    ),
    17: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
        "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
        "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
        "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
        "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
        "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
        "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
        "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
        "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DCC4024FFFFFFFFFFFFFFFF"
    ),
    18: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
        "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
        "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
        "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
        "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
        "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
        "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
        "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
        "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DBE115974A3926F12FEE5E4"
        "38777CB6A932DF8CD8BEC4D073B931BA3BC832B68D9DD300741FA7BF8AFC47ED"
        "2576F6936BA424663AAB639C5AE4F5683423B4742BF1C978238F16CBE39D652D"
        "E3FDB8BEFC848AD922222E04A4037C0713EB57A81A23F0C73473FC646CEA306B"
        "4BCBC8862F8385DDFA9D4B7FA2C087E879683303ED5BDD3A062B3CF5B3A278A6"
        "6D2A13F83F44F82DDF310EE074AB6A364597E899A0255DC164F31CC50846851D"
        "F9AB48195DED7EA1B1D510BD7EE74D73FAF36BC31ECFA268359046F4EB879F92"
        "4009438B481C6CD7889A002ED5EE382BC9190DA6FC026E479558E4475677E9AA"
        "9E3050E2765694DFC81F56E880B96E7160C980DD98EDD3DFFFFFFFFFFFFFFFFF"
    ),
}

# OpenSSL knows the RFC 3526 primes by name; the two RFC 2409 ones it re-validates (a full
# primality test, tens of milliseconds) on every key it loads, public or private. For these, both
# g^x and g^xy are GMP's mpz_powm_sec: constant time in the exponent, and faster than OpenSSL.
_GMP_MODP = frozenset({1, 2})

# Private exponent length in bits. A short exponent must be at least twice the group's strength
# (the 2^(n/2) attacks on an n-bit exponent; NIST SP 800-56A Rev. 3 §5.6.1.1.1 asks 2s <= n <=
# len(q)): these are the larger "exponent size" column of RFC 3526 §8, and 256 bits for groups 1
# and 2 (strength about 64 and 80 bits), above twice their strength. All are far below
# len(q) = len(p) - 1 for these safe primes, so x < q.
_MODP_EXPONENT_BITS = {1: 256, 2: 256, 5: 240, 14: 320, 15: 420, 16: 480, 17: 540, 18: 620}

# ECP groups: RFC 5903 §3 (IKE group numbers 19, 20, 21) with the curve orders of FIPS 186-4 D.1.2.
_ECP_CURVES: dict[int, tuple[type[ec.EllipticCurve], int, int]] = {
    19: (
        ec.SECP256R1,
        32,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    20: (
        ec.SECP384R1,
        48,
        int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
            16,
        ),
    ),
    21: (
        ec.SECP521R1,
        66,
        int(
            "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    ),
}

SUPPORTED_GROUPS: tuple[int, ...] = tuple(sorted((*_MODP_PRIMES, *_ECP_CURVES)))


def modp_prime(group: int) -> int:
    """The prime of MODP `group` (1, 2, 5, 14-18)."""
    return int("".join(_MODP_PRIMES[group]), 16)


@contextmanager
def _ffdh() -> Iterator[None]:
    # cryptography marks finite-field DH deprecated; IKEv1 peers still need it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


@dataclass(frozen=True, repr=False)
class DHPrivate:
    """Our half of one exchange: opaque to callers, kept by the engine until g^xy is computed."""

    group: int
    key: object  # a cryptography DH or EC private key; the exponent (int) for MODP 1 and 2
    public: bytes

    def __repr__(self) -> str:  # never the private value, even in a debug log
        return f"DHPrivate(group={self.group})"


class ModpGroup:
    """A MODP group with generator 2 (RFC 2409 §6, RFC 3526)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.prime = modp_prime(number)
        self.public_length = (self.prime.bit_length() + 7) // 8
        self.secret_length = self.public_length
        self._exponent_bits = _MODP_EXPONENT_BITS[number]
        self._gmp_prime = gmpy2.mpz(self.prime)
        # The two shared secrets NIST SP 800-56A Rev. 3 §5.7.1.1 refuses, in their wire form.
        n = self.secret_length
        self._bad_secrets = ((1).to_bytes(n, "big"), (self.prime - 1).to_bytes(n, "big"))
        with _ffdh():
            self._numbers = dh.DHParameterNumbers(self.prime, 2)
            # The generator as a public key, built once: g^x is the "shared secret" of x and g.
            self._generator = None
            if number not in _GMP_MODP:
                self._generator = dh.DHPublicNumbers(2, self._numbers).public_key()

    def generate(self, rng: Rng) -> tuple[DHPrivate, bytes]:
        """A fresh private value and its public value g^x, padded to the prime's length."""
        nbytes = (self._exponent_bits + 7) // 8
        x = int.from_bytes(rng(nbytes), "big") >> (8 * nbytes - self._exponent_bits)
        # The top bit set: every exponent has the same length, so a constant-time exponentiation
        # costs the same for every key (and x is never 0 or 1).
        x |= 1 << (self._exponent_bits - 1)
        key: object = x
        if self._generator is None:
            y = int(gmpy2.powmod_sec(2, x, self._gmp_prime))
        else:
            # OpenSSL exponentiates in constant time and faster than GMP here (for MODP-2048
            # this whole branch takes 0.6 ms, mpz_powm_sec alone 1.0 ms); the placeholder
            # public value of the first key is never sent, the kept key carries the real g^x.
            with _ffdh():
                numbers = self._numbers
                probe = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(2, numbers)).private_key()
                y = int.from_bytes(probe.exchange(self._generator), "big")
                key = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, numbers)).private_key()
        public = y.to_bytes(self.public_length, "big")
        return DHPrivate(self.number, key, public), public

    def check_public(self, peer_public: bytes) -> int:
        """The peer's g^y as an integer, or DHError (wrong length, or not 1 < y < p-1)."""
        if len(peer_public) != self.public_length:
            raise DHError(
                f"group {self.number}: public value is {len(peer_public)} bytes, "
                f"expected {self.public_length}"
            )
        y = int.from_bytes(peer_public, "big")
        # NIST SP 800-56A Rev. 3 §5.6.2.3.2: reject 0, 1, p-1 and anything not below p. With a
        # safe prime the only small subgroup is {1, p-1}; the full test's y^q = 1 would only
        # refuse the other half of the group, which no IKE implementation checks.
        if not 1 < y < self.prime - 1:
            raise DHError(f"group {self.number}: public value out of range")
        return y

    def shared_secret(self, private: DHPrivate, peer_public: bytes) -> bytes:
        """g^xy padded with leading zeros to the prime's length (RFC 2409 §5)."""
        _check_owner(self.number, private)
        y = self.check_public(peer_public)
        if isinstance(private.key, int):
            z = gmpy2.powmod_sec(y, private.key, self._gmp_prime)
            secret = int(z).to_bytes(self.secret_length, "big")
        else:
            try:
                with _ffdh():
                    peer = dh.DHPublicNumbers(y, self._numbers).public_key()
                    secret = private.key.exchange(peer)  # type: ignore[attr-defined]
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise DHError(f"group {self.number}: peer public value rejected ({exc})") from None
            secret = secret.rjust(self.secret_length, b"\0")
        # NIST SP 800-56A Rev. 3 §5.7.1.1: a shared secret of 1 or p-1 is an error. Compared
        # without an early exit, since the secret is secret.
        bad = hmac.compare_digest(secret, self._bad_secrets[0])
        bad |= hmac.compare_digest(secret, self._bad_secrets[1])
        if bad:
            raise DHError(f"group {self.number}: shared secret is 1 or p-1")
        return secret


class EcpGroup:
    """A NIST prime curve used as an IKE group (RFC 5903)."""

    def __init__(self, number: int) -> None:
        curve, coordinate_length, order = _ECP_CURVES[number]
        self.number = number
        self.curve = curve()
        self.order = order
        self.coordinate_length = coordinate_length
        self.public_length = 2 * coordinate_length  # x || y, RFC 5903 §7
        self.secret_length = coordinate_length  # x of the shared point, RFC 5903 §7

    def generate(self, rng: Rng) -> tuple[DHPrivate, bytes]:
        """A fresh private scalar in [1, n-1] and its public point x || y."""
        # 8 extra bytes make the bias of the reduction negligible (FIPS 186-4 B.4.1).
        d = int.from_bytes(rng(self.coordinate_length + 8), "big") % (self.order - 1) + 1
        key = ec.derive_private_key(d, self.curve)
        numbers = key.public_key().public_numbers()
        n = self.coordinate_length
        public = numbers.x.to_bytes(n, "big") + numbers.y.to_bytes(n, "big")
        return DHPrivate(self.number, key, public), public

    def check_public(self, peer_public: bytes) -> ec.EllipticCurvePublicKey:
        """The peer's point, or DHError (wrong length, or not on the curve)."""
        if len(peer_public) != self.public_length:
            raise DHError(
                f"group {self.number}: public value is {len(peer_public)} bytes, "
                f"expected {self.public_length}"
            )
        n = self.coordinate_length
        x = int.from_bytes(peer_public[:n], "big")
        y = int.from_bytes(peer_public[n:], "big")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, self.curve).public_key()
        except ValueError:
            raise DHError(f"group {self.number}: public value not on the curve") from None

    def shared_secret(self, private: DHPrivate, peer_public: bytes) -> bytes:
        """The x coordinate of d * Q, padded to the field length (RFC 5903 §7)."""
        _check_owner(self.number, private)
        peer = self.check_public(peer_public)
        try:
            secret = private.key.exchange(ec.ECDH(), peer)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise DHError(f"group {self.number}: ECDH failed ({exc})") from None
        return secret.rjust(self.secret_length, b"\0")


DHGroup = ModpGroup | EcpGroup


def _check_owner(number: int, private: DHPrivate) -> None:
    if private.group != number:
        raise DHError(f"private value of group {private.group} used with group {number}")


@cache
def dh_group(number: int) -> DHGroup:
    """The group for an IKE group number; DHError if pyike does not support it."""
    if number in _MODP_PRIMES:
        return ModpGroup(number)
    if number in _ECP_CURVES:
        return EcpGroup(number)
    raise DHError(f"unsupported Diffie-Hellman group {number}")
