"""What a setkey.conf says, command by command, once parsed (nothing applied yet).

SPD commands go to `spd.db.SPD.apply`; the SAD commands (flush, add, delete, deleteall) stay
here for the daemon to install into esp's SAD: `SetkeyFile.manual_sas()` folds them into the
list of hand-keyed SAs the file leaves behind. Keys are kept out of every repr.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from spd.errors import SetkeyError
from spd.policy import IPAddress, Policy


@dataclass(frozen=True)
class Flush:
    """`flush [protocol];`: empty the SAD (only that protocol's SAs when one is named)."""

    protocol: str | None = None
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class SpdFlush:
    """`spdflush;`: empty the SPD."""

    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class SpdCommand:
    """`spdadd`, `spdupdate` or `spddelete` (the verb) of one policy."""

    verb: str
    policy: Policy
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ManualSA:
    """`add SRC DST esp SPI ... -E ALG KEY -A ALG KEY;`: a hand-keyed SA.

    enc_alg/auth_alg are esp's algorithm names; setkey_enc/setkey_auth are the words written.
    `-A hmac-sha256` becomes "hmac-sha256-96": Linux's PF_KEY truncates that ICV to 96 bits,
    so a peer keyed from the same file puts 12-byte ICVs on the wire.
    replay is `-r` as written (None: not given); mode "any" is setkey's default (transport).
    Lifetimes are `-lh/-ls` seconds and `-bh/-bs` bytes, 0 meaning none.
    """

    src: IPAddress
    dst: IPAddress
    protocol: str
    spi: int
    enc_alg: str
    enc_key: bytes = field(repr=False)
    auth_alg: str
    auth_key: bytes = field(repr=False)
    setkey_enc: str = ""
    setkey_auth: str = ""
    mode: str = "any"
    replay: int | None = None
    reqid: int = 0
    hard_s: int = 0
    soft_s: int = 0
    hard_bytes: int = 0
    soft_bytes: int = 0
    flags: tuple[str, ...] = ()
    src_port: int = 0
    dst_port: int = 0
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ManualSADelete:
    """`delete SRC DST esp SPI;`."""

    src: IPAddress
    dst: IPAddress
    protocol: str
    spi: int
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ManualSADeleteAll:
    """`deleteall SRC DST esp;`: every SA of that protocol between the two addresses."""

    src: IPAddress
    dst: IPAddress
    protocol: str
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


Command = Flush | SpdFlush | SpdCommand | ManualSA | ManualSADelete | ManualSADeleteAll


@dataclass
class SetkeyFile:
    """A parsed setkey.conf: its commands in file order."""

    filename: str
    commands: list[Command] = field(default_factory=list)

    def error(self, command: Command, token: str, msg: str) -> SetkeyError:
        return SetkeyError(self.filename, command.line, command.column, token, msg)

    def spd_commands(self) -> list[SpdFlush | SpdCommand]:
        return [c for c in self.commands if isinstance(c, SpdFlush | SpdCommand)]

    def manual_sas(self, before: Iterable[ManualSA] = ()) -> list[ManualSA]:
        """The hand-keyed SAs left after running the SAD commands in order on the SAs
        `before` (those of the files read earlier; none by default).

        An SA is identified by destination, protocol and SPI (RFC 4301 §4.1); adding one twice
        or deleting one that is not there is an error, as the kernel would refuse it.
        """
        sad: dict[tuple, ManualSA] = {(sa.dst, sa.protocol, sa.spi): sa for sa in before}
        for cmd in self.commands:
            if isinstance(cmd, Flush):
                sad = {k: sa for k, sa in sad.items()
                       if cmd.protocol is not None and sa.protocol != cmd.protocol}
            elif isinstance(cmd, ManualSA):
                key = (cmd.dst, cmd.protocol, cmd.spi)
                if key in sad:
                    raise self.error(cmd, f"{cmd.spi:#x}", "this SA was already added")
                sad[key] = cmd
            elif isinstance(cmd, ManualSADelete):
                if sad.pop((cmd.dst, cmd.protocol, cmd.spi), None) is None:
                    raise self.error(cmd, f"{cmd.spi:#x}", "no such SA to delete")
            elif isinstance(cmd, ManualSADeleteAll):
                sad = {k: sa for k, sa in sad.items()
                       if (sa.src, sa.dst, sa.protocol) != (cmd.src, cmd.dst, cmd.protocol)}
        return list(sad.values())
