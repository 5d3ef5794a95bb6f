"""Anti-replay sliding window for 32-bit ESP sequence numbers (RFC 4303 §3.4.3, Appendix A).

The window is a Python int used as a bitmap: bit i set means sequence number `top - i` has been
received and verified. The caller checks first (cheap, before the ICV) and records the number
only once the ICV has verified, so forged packets never move the window.
"""

from __future__ import annotations

OK = 0
REPLAYED = 1
TOO_OLD = 2

DEFAULT_WINDOW = 1024


class ReplayWindow:
    __slots__ = ("size", "top", "_bits", "_mask")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 0:
            raise ValueError("replay window size must be >= 0")
        self.size = size  # 0 disables the check (setkey -r 0), as on a kernel SA
        self.top = 0  # highest verified sequence number
        self._bits = 0
        self._mask = (1 << size) - 1

    def check(self, seq: int) -> int:
        """OK, REPLAYED or TOO_OLD for `seq`; the window itself is left untouched."""
        if self.size == 0:
            return OK
        if seq == 0:
            # RFC 4303 §3.3.3: the first packet sent carries 1; 0 never appears on the wire.
            return TOO_OLD
        top = self.top
        if seq > top:
            return OK
        diff = top - seq
        if diff >= self.size:
            return TOO_OLD
        return REPLAYED if (self._bits >> diff) & 1 else OK

    def accept(self, seq: int) -> None:
        """Record a verified `seq`, sliding the window right when it is the newest."""
        if self.size == 0:
            return
        top = self.top
        if seq > top:
            shift = seq - top
            # A jump past the whole window clears it; never shift by billions of bits.
            self._bits = ((self._bits << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            self._bits |= 1 << (top - seq)

    def bitmap(self) -> int:
        """The window as an int: bit i is sequence number `top - i`."""
        return self._bits
