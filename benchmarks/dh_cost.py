"""Diffie-Hellman cost: microseconds per g^x and per g^xy for MODP groups 1, 2, 5 and 14.

Per group, side by side:
- before: pyike's previous code paths. For groups 1 and 2 a fixed-base table for g^x and
  int.__pow__ for g^xy, both variable time in the secret exponent (reproduced here only to
  measure them; ikev1.crypto.dh no longer has them). For groups 5 and 14 OpenSSL, unchanged.
- now: ikev1.crypto.dh as it is, ModpGroup.generate (g^x) and ModpGroup.shared_secret (g^xy),
  each with its range checks and padding.
- pow, powmod_sec: the bare exponentiation y^x mod p at the group's exponent length, by
  int.__pow__ and by gmpy2 (GMP's constant-time mpz_powm_sec), for scale.
Each figure is the median over rounds of the mean of one batch of calls.

python -m benchmarks.dh_cost [--rounds N] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import gmpy2

from benchmarks.report import fmt, ratio, summary, table
from ikev1 import crypto

GROUPS = (1, 2, 5, 14)
_TABLE_GROUPS = frozenset({1, 2})  # the groups whose g^x went through the fixed-base table


def _per_call_us(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) / count * 1e6


class _Before:
    """The removed variable-time paths of groups 1 and 2, with the same checks and padding."""

    def __init__(self, group: crypto.ModpGroup) -> None:
        self.group = group
        p = group.prime
        rows = []
        base = 2
        for _ in range(-(-group._exponent_bits // 4)):  # 2^(d * 16^i) mod p for each digit d
            row = [1]
            for _ in range(15):
                row.append(row[-1] * base % p)
            rows.append(tuple(row))
            base = row[-1] * base % p
        self.rows = tuple(rows)

    def generate(self) -> tuple[int, bytes]:
        group = self.group
        bits = group._exponent_bits
        nbytes = (bits + 7) // 8
        x = int.from_bytes(os.urandom(nbytes), "big") >> (8 * nbytes - bits) | 1 << (bits - 1)
        p, y, digits = group.prime, 1, x
        for row in self.rows:
            y = y * row[digits & 15] % p
            digits >>= 4
        return x, y.to_bytes(group.public_length, "big")

    def shared_secret(self, x: int, peer_public: bytes) -> bytes:
        group = self.group
        y = group.check_public(peer_public)
        return pow(y, x, group.prime).to_bytes(group.secret_length, "big")


def _measure(number: int, count: int) -> dict[str, float]:
    group = crypto.dh_group(number)
    assert isinstance(group, crypto.ModpGroup)
    mine, _ = group.generate(os.urandom)
    _, theirs = group.generate(os.urandom)
    figures = {
        "now_gx": _per_call_us(lambda: group.generate(os.urandom), count),
        "now_gxy": _per_call_us(lambda: group.shared_secret(mine, theirs), count),
    }
    if number in _TABLE_GROUPS:
        before = _Before(group)
        x, _ = before.generate()
        figures["before_gx"] = _per_call_us(before.generate, count)
        figures["before_gxy"] = _per_call_us(lambda: before.shared_secret(x, theirs), count)
    else:  # OpenSSL then and now: the same calls, measured again
        figures["before_gx"] = _per_call_us(lambda: group.generate(os.urandom), count)
        figures["before_gxy"] = _per_call_us(lambda: group.shared_secret(mine, theirs), count)
    bits = group._exponent_bits
    e = int.from_bytes(os.urandom(bits // 8), "big") | 1 << (bits - 1)
    y, p = int.from_bytes(theirs, "big"), group.prime
    gy, gp = gmpy2.mpz(y), gmpy2.mpz(p)
    figures["pow"] = _per_call_us(lambda: pow(y, e, p), count)
    figures["powmod_sec"] = _per_call_us(lambda: gmpy2.powmod_sec(gy, e, gp), count)
    return figures


def run(rounds: int, smoke: bool, out_dir: Path) -> dict:
    """Measure, print the table and return every figure (no plot)."""
    rounds = max(1, rounds)
    columns = ("before_gx", "now_gx", "before_gxy", "now_gxy", "pow", "powmod_sec")
    samples = {g: {c: [] for c in columns} for g in GROUPS}
    for _ in range(rounds):  # rounds interleave the groups and the paths
        for number in GROUPS:
            count = 5 if smoke else (60 if number == 14 else 200)
            for c, v in _measure(number, count).items():
                samples[number][c].append(v)
    results: dict = {"name": "dh", "rounds": rounds, "groups": {}}
    rows = []
    for number in GROUPS:
        stats = {c: summary(v) for c, v in samples[number].items()}
        med = {c: stats[c]["median"] for c in columns}
        entry = {**stats, "gx_before_vs_now": ratio(med["before_gx"], med["now_gx"]),
                 "gxy_before_vs_now": ratio(med["before_gxy"], med["now_gxy"])}
        results["groups"][str(number)] = entry
        bits = crypto.dh_group(number)._exponent_bits
        paths = "table+pow -> GMP" if number in _TABLE_GROUPS else "OpenSSL (same)"
        rows.append([
            f"{number} ({crypto.modp_prime(number).bit_length()}-bit, x {bits} bits)", paths,
            fmt(med["before_gx"]), fmt(med["now_gx"]), fmt(entry["gx_before_vs_now"], 2) + "x",
            fmt(med["before_gxy"]), fmt(med["now_gxy"]), fmt(entry["gxy_before_vs_now"], 2) + "x",
            fmt(med["pow"]), fmt(med["powmod_sec"]),
        ])
    results["table"] = table(
        f"MODP Diffie-Hellman, us per operation (median of {rounds} round(s)); "
        "before = variable-time table and pow for groups 1-2",
        ["group", "before -> now", "g^x before", "g^x now", "before/now", "g^xy before",
         "g^xy now", "before/now", "pow", "powmod_sec"],
        rows,
    )
    print(results["table"], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dh_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    run(args.rounds, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
