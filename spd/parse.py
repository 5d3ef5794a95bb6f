"""setkey.conf parser: the setkey(8) grammar a racoon site uses.

    flush [PROTO]; spdflush;
    spdadd|spdupdate|spddelete [-46n] SRC[/PLEN][[PORT]] DST[/PLEN][[PORT]] UPPER [SPEC] -P POLICY;
    add [-46n] SRC DST esp SPI [-m MODE] [-r N] [-u N] [-f X] [-lh|-ls|-bh|-bs N]
        -E ALG KEY -A ALG KEY;
    delete [-46n] SRC DST esp SPI; deleteall [-46n] SRC DST esp;

The whole file is parsed before anything is applied, and the first problem raises a
SetkeyError naming file:line:column and the token. Addresses must be numeric: pyike does not
resolve host names while loading its configuration.
"""

from __future__ import annotations

import ipaddress

from spd.commands import (
    Flush,
    ManualSA,
    ManualSADelete,
    ManualSADeleteAll,
    SetkeyFile,
    SpdCommand,
    SpdFlush,
)
from spd.errors import SetkeyError, SourceText
from spd.lexer import Cursor, Token, tokenize
from spd.policy import (
    NOT_CARRIED,
    PROTO_ANY,
    PROTO_GRE,
    TYPE_CODE_PROTOCOLS,
    IPAddress,
    IPNetwork,
    Policy,
)
from spd.policy_spec import parse_policy_spec
from spd.protocols import ProtocolTable, default_table

__all__ = ["MIN_SPI", "SetkeyError", "SetkeyFile", "parse_setkey"]

MIN_SPI = 256  # RFC 4303 §2.1: SPIs 1-255 are reserved by IANA, 0 for local use
_REPLAY_MAX = 255  # RFC 2367 §2.3.1: sadb_sa_replay is one octet
_LONGEST_NUMBER = len("0x") + 16  # no number in a setkey.conf needs more than 64 bits

# SA protocols setkey knows; pyike keys ESP only.
_SA_PROTOCOLS = ("esp", "ah", "ipcomp", "esp-old", "ah-old", "esp-udp", "tcp")
_ACTIONS = ("ipsec", "none", "discard")
_UNSUPPORTED_COMMANDS = ("get", "getspi", "dump", "spddump")
_END_COMMANDS = ("exit", "quit", "bye")  # setkey stops reading here

# setkey word -> (esp's name, allowed key lengths in bytes)
_ENC = {
    "aes-cbc": ("aes-cbc", (16, 24, 32)),  # RFC 3602 §2.2
    "rijndael-cbc": ("aes-cbc", (16, 24, 32)),
    "3des-cbc": ("3des-cbc", (24,)),  # RFC 2451
    "aes-ctr": ("aes-ctr", (20, 28, 36)),  # RFC 3686 §5.1: the key, then a 4-byte nonce
}
_AUTH = {
    "hmac-sha1": ("hmac-sha1", (20,)),  # RFC 2404 §3
    "hmac-sha256": ("hmac-sha256-96", (32,)),  # Linux PF_KEY: 96-bit ICV, not RFC 4868's 128
    "hmac-sha2-256": ("hmac-sha256-96", (32,)),
    "hmac-md5": ("hmac-md5", (16,)),  # RFC 2403 §3
    # RFC 4868 §2.3 ICVs (192 and 256 bits), which Linux's PF_KEY uses for these two too
    "hmac-sha384": ("hmac-sha384", (48,)),
    "hmac-sha2-384": ("hmac-sha384", (48,)),
    "hmac-sha512": ("hmac-sha512", (64,)),
    "hmac-sha2-512": ("hmac-sha512", (64,)),
}
_KNOWN_ENC = ("des-cbc", "null", "simple", "blowfish-cbc", "cast128-cbc", "des-deriv",
              "des-32iv", "twofish-cbc", "camellia-cbc")
_KNOWN_AUTH = ("keyed-md5", "keyed-sha1", "hmac-ripemd160", "aes-xcbc-mac", "tcp-md5", "null")


def parse_setkey(text: str, filename: str = "setkey.conf", *,
                 protocols: ProtocolTable | None = None) -> SetkeyFile:
    """Parses a whole setkey.conf; raises SetkeyError at the first problem."""
    src = SourceText(text, filename)
    return _Parser(src, tokenize(src), protocols or default_table()).parse()


class _Parser(Cursor):
    def __init__(self, src: SourceText, tokens: list[Token], protocols: ProtocolTable) -> None:
        super().__init__(src, tokens)
        self.protocols = protocols

    def fail(self, tok: Token, msg: str) -> SetkeyError:
        # A quoted string, or a 0x word longer than any 64-bit number, is most likely a key
        # out of place (a missing algorithm name, a key split in two): its text is not shown.
        if tok.kind == "string" or (tok.kind == "word" and tok.text[:2].lower() == "0x"
                                    and len(tok.text) > _LONGEST_NUMBER):
            return self.src.error(tok.start, "<key?>", msg)
        return super().fail(tok, msg)

    def word(self, what: str) -> Token:
        tok = self.take()
        if tok.kind != "word":
            raise self.fail(tok, f"expected {what}")
        return tok

    def end_of_statement(self) -> None:
        tok = self.take()
        if tok.kind != ";":
            raise self.fail(tok, "expected ';' to end the statement")

    # -- statements ----------------------------------------------------------------------

    def parse(self) -> SetkeyFile:
        result = SetkeyFile(self.src.filename)
        while self.peek().kind != "eof":
            tok = self.take()
            if tok.kind == ";":
                continue  # an empty statement
            if tok.kind != "word":
                raise self.fail(tok, "expected a command")
            verb = tok.text
            line, column = self.src.position(tok.start)
            if verb in _END_COMMANDS:
                self.end_of_statement()
                break
            if verb == "flush":
                proto = None
                if self.peek().kind == "word":
                    proto = self.sa_protocol(self.take(), supported_only=False)
                self.end_of_statement()
                result.commands.append(Flush(proto, line, column))
            elif verb == "spdflush":
                self.end_of_statement()
                result.commands.append(SpdFlush(line, column))
            elif verb in ("spdadd", "spdupdate", "spddelete"):
                policy = self.spd_statement(verb)
                result.commands.append(SpdCommand(verb, policy, line, column))
            elif verb == "add":
                result.commands.append(self.add_statement(line, column))
            elif verb in ("delete", "deleteall"):
                result.commands.append(self.delete_statement(verb, line, column))
            elif verb in _UNSUPPORTED_COMMANDS:
                raise self.fail(tok, f"'{verb}' is not supported in a configuration file")
            else:
                raise self.fail(tok, "unknown command")
        return result

    def family_options(self) -> int | None:
        """`-4`, `-6`, `-n` and their combinations; returns the forced IP version, if any."""
        version = None
        while self.peek().kind == "word" and self.peek().text[:1] == "-" and \
                len(self.peek().text) > 1 and set(self.peek().text[1:]) <= set("46n"):
            for flag in self.take().text[1:]:
                if flag in "46":
                    version = int(flag)
        return version

    def address(self, version: int | None) -> tuple[Token, IPAddress]:
        tok = self.take()
        if tok.kind != "word" or tok.text.startswith("-"):
            raise self.fail(tok, "expected an IP address")
        if "%" in tok.text:
            raise self.fail(tok, "scoped addresses (%zone) are not supported")
        try:
            addr = ipaddress.ip_address(tok.text)
        except ValueError:
            raise self.fail(tok, "expected a numeric IP address (host names are not "
                                 "resolved)") from None
        if version is not None and addr.version != version:
            raise self.fail(tok, f"not an IPv{version} address, as -{version} requires")
        return tok, addr

    def port(self) -> int:
        """An optional `[port]` or `[any]`; 0 means any (setkey(8))."""
        if not self.accept("["):
            return 0
        tok = self.take()
        if tok.kind == "word" and tok.text == "any":
            value = 0
        else:
            value = self.number(tok, 65535, "port (or 'any')")
        if not self.accept("]"):
            raise self.fail(self.peek(), "expected ']' after the port")
        return value

    def address_range(self, version: int | None) -> tuple[IPNetwork, int]:
        tok, addr = self.address(version)
        prefix = addr.max_prefixlen  # setkey: no /prefixlen means the host alone
        if self.accept("/"):
            prefix = self.number(self.take(), addr.max_prefixlen, "prefix length")
        network = ipaddress.ip_network((addr, prefix), strict=False)
        return network, self.port()

    def upper_layer(self) -> tuple[Token, int]:
        tok = self.take()
        if tok.kind != "word" or tok.text.startswith("-"):
            raise self.fail(tok, "expected an upper-layer protocol (a name, a number or any)")
        if tok.text == "any":
            return tok, PROTO_ANY
        if tok.text.isdigit():
            number = self.number(tok, 255, "protocol number")
        else:
            found = self.protocols.number(tok.text)
            if found is None:
                raise self.fail(tok, "unknown upper-layer protocol")
            number = found
        # Linux keeps "any" as 0 internally and shows it as 255: the two are one selector.
        return tok, PROTO_ANY if number == 0 else number

    def spd_statement(self, verb: str) -> Policy:
        version = self.family_options()
        if self.peek().kind == "word" and self.peek().text == "tagged":
            raise self.fail(self.peek(), "tagged policies are not supported: a PF tag names "
                                         "packets marked by a BSD pf filter, which neither "
                                         "Linux nor pyike has")
        src, sport = self.address_range(version)
        dst_tok = self.peek()
        dst, dport = self.address_range(version)
        if src.version != dst.version:
            raise self.fail(dst_tok, "source and destination are of different address families")
        proto_tok, proto = self.upper_layer()
        gre_key = 0
        tok = self.peek()
        if tok.kind == "word" and not tok.text.startswith("-") and tok.text not in _ACTIONS:
            self.take()
            sport, dport, gre_key = self.upper_spec(tok, proto)
        elif proto == PROTO_GRE and (sport or dport):
            gre_key = (sport << 16) | dport  # the kernel reads a GRE key from the port fields
            sport = dport = 0
        tok = self.take()
        if tok.kind == "word" and tok.text == "-ctx":
            raise self.fail(tok, "security contexts (-ctx) are not supported")
        if tok.kind != "word" or tok.text != "-P":
            if tok.kind == "word" and tok.text in _ACTIONS:
                # setkey(8)'s GRE-key example omits -P, but setkey's grammar requires it and
                # the kernel needs a direction: pyike refuses it like setkey does.
                raise self.fail(tok, "missing '-P in|out|fwd' before the action")
            raise self.fail(tok, "expected '-P' and a policy (-P in|out|fwd ...)")
        region = self.take()
        spec = parse_policy_spec(self.src, region, bare_direction=verb == "spddelete")
        self.end_of_statement()
        return Policy(src=src, dst=dst, sport=sport, dport=dport, proto=proto,
                      direction=spec.direction, priority=spec.priority, action=spec.action,
                      rules=spec.rules, gre_key=gre_key)

    def upper_spec(self, tok: Token, proto: int) -> tuple[int, int, int]:
        """`type,code` for ICMP/ICMPv6/MH, a key (dotted quad or number) for GRE.

        Returns (sport, dport, gre_key): ICMP's type and code ride in the port fields.
        """
        text = tok.text
        if proto in TYPE_CODE_PROTOCOLS:
            parts = text.split(",")
            if len(parts) != 2 or not all(p.isdigit() and int(p) <= 255 for p in parts):
                raise self.fail(tok, "expected TYPE,CODE (decimal, each at most 255)")
            return int(parts[0]), int(parts[1]), 0
        if proto == PROTO_GRE:
            return 0, 0, self.gre_key(tok)
        raise self.fail(tok, "only icmp, icmp6, mh and gre take an upper-layer parameter")

    def gre_key(self, tok: Token) -> int:
        """A GRE key (RFC 2890 §2.1, 32 bits) as setkey reads one: a dotted quad only."""
        text = tok.text
        parts = text.split(".")
        if len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts):
            return int.from_bytes(bytes(int(p) for p in parts), "big")
        if text.isdigit() and int(text) < 2**32:
            # setkey(8) documents "a plain number", but setkey's lexer makes one a number
            # token where its grammar wants a string, so setkey refuses it; so does pyike
            dotted = ".".join(str(b) for b in int(text).to_bytes(4, "big"))
            raise self.fail(tok, f"setkey refuses a GRE key written as a number: write it as "
                                 f"a dotted quad ({dotted})")
        raise self.fail(tok, "a GRE key is a dotted quad (A.B.C.D)")

    # -- manual SAs ----------------------------------------------------------------------

    def sa_protocol(self, tok: Token, supported_only: bool = True) -> str:
        if tok.kind != "word" or tok.text not in _SA_PROTOCOLS:
            raise self.fail(tok, "expected an SA protocol (esp)")
        if supported_only and tok.text == "esp-udp":
            raise self.fail(tok, "hand-keyed ESP in UDP (esp-udp, RFC 3948) is not supported: "
                                 "pyike puts ESP in UDP only for SAs it negotiates with NAT-T")
        base = tok.text.removesuffix("-old")
        if supported_only and base in NOT_CARRIED:
            raise self.fail(tok, f"hand-keyed {NOT_CARRIED[base]} SAs are not supported: "
                                 "pyike's data plane carries ESP only")
        if supported_only and tok.text != "esp":
            raise self.fail(tok, "only esp SAs are supported")
        return tok.text

    def spi(self) -> int:
        tok = self.take()
        text = tok.text.lower()
        try:
            if tok.kind != "word":
                raise ValueError
            value = int(text[2:], 16) if text.startswith("0x") else int(text, 10)
        except ValueError:
            raise self.fail(tok, "expected an SPI (decimal or 0x hex)") from None
        if value > 0xFFFFFFFF:  # RFC 4303 §2.1: a 32-bit field
            raise self.fail(tok, "SPI out of range (256 .. 0xffffffff)")
        if value < MIN_SPI:
            raise self.fail(tok, f"SPI {value} is reserved (RFC 4303 §2.1: 1-255 are reserved "
                                 "by IANA, 0 for local use); use 256 (0x100) or above")
        return value

    def sa_end_points(self) -> tuple[Token, IPAddress, int, IPAddress, int]:
        version = self.family_options()
        src_tok, src = self.address(version)
        sport = self.port()
        dst_tok, dst = self.address(version)
        dport = self.port()
        if src.version != dst.version:
            raise self.fail(dst_tok, "source and destination are of different address families")
        return src_tok, src, sport, dst, dport

    def delete_statement(self, verb: str, line: int, column: int
                         ) -> ManualSADelete | ManualSADeleteAll:
        _, src, _, dst, _ = self.sa_end_points()
        protocol = self.sa_protocol(self.take())
        if verb == "deleteall":
            self.end_of_statement()
            return ManualSADeleteAll(src, dst, protocol, line, column)
        spi = self.spi()
        if self.peek().kind == "word" and self.peek().text == "-m":
            self.take()
            self.word("a mode")  # obsolete for delete; setkey only warns
        self.end_of_statement()
        return ManualSADelete(src, dst, protocol, spi, line, column)

    def add_statement(self, line: int, column: int) -> ManualSA:
        _, src, sport, dst, dport = self.sa_end_points()
        protocol = self.sa_protocol(self.take())
        spi = self.spi()
        fields: dict = {}
        seen: set[str] = set()
        while self.peek().kind == "word":
            opt = self.take()
            if opt.text in seen and opt.text != "-f":
                raise self.fail(opt, "option given twice")
            seen.add(opt.text)
            self.sa_option(opt, fields)
        if "-E" not in seen:
            raise self.fail(self.peek(), "an esp SA needs -E ALGORITHM KEY")
        if "-A" not in seen:
            raise self.fail(self.peek(), "an esp SA without -A authentication is not supported")
        self.end_of_statement()
        return ManualSA(src=src, dst=dst, protocol=protocol, spi=spi, src_port=sport,
                        dst_port=dport, line=line, column=column, **fields)

    def sa_option(self, opt: Token, fields: dict) -> None:
        name = opt.text
        if name == "-m":
            mode = self.word("a mode (transport, tunnel or any)")
            if mode.text not in ("transport", "tunnel", "any"):
                raise self.fail(mode, "expected a mode: transport, tunnel or any")
            if mode.text == "tunnel":
                # the kernel keeps such an SA for tunnel-mode policies; pyike's hand-keyed
                # SAs seal in transport mode, so it would not be what it says
                raise self.fail(mode, "hand-keyed tunnel-mode SAs are not supported: pyike "
                                      "uses hand-keyed SAs in transport mode only")
            fields["mode"] = mode.text
        elif name == "-r":
            # setkey stores it in PF_KEY's 8-bit sadb_sa_replay (RFC 2367 §2.3.1), so a
            # larger number would reach a kernel cut to its low byte
            fields["replay"] = self.number(self.take(), _REPLAY_MAX, "replay window")
        elif name == "-u":
            fields["reqid"] = self.number(self.take(), 0xFFFFFFFF, "reqid")
        elif name in ("-lh", "-ls", "-bh", "-bs"):
            key = {"-lh": "hard_s", "-ls": "soft_s", "-bh": "hard_bytes", "-bs": "soft_bytes"}
            fields[key[name]] = self.number(self.take(), 2**64 - 1, "lifetime")
        elif name == "-f":
            flag = self.word("a flag")
            if flag.text not in ("random-pad", "seq-pad", "zero-pad", "nocyclic-seq"):
                raise self.fail(flag, "unknown -f flag")
            fields["flags"] = (*fields.get("flags", ()), flag.text)
        elif name == "-E":
            alg = self.word("an encryption algorithm")
            fields["setkey_enc"] = alg.text
            fields["enc_alg"], fields["enc_key"] = self.algorithm(alg, _ENC, _KNOWN_ENC)
        elif name == "-A":
            alg = self.word("an authentication algorithm")
            fields["setkey_auth"] = alg.text
            fields["auth_alg"], fields["auth_key"] = self.algorithm(alg, _AUTH, _KNOWN_AUTH)
        elif name == "-ctx":
            raise self.fail(opt, "security contexts (-ctx) are not supported")
        else:
            raise self.fail(opt, "unknown SA option")

    def algorithm(self, alg: Token, table: dict, known: tuple[str, ...]) -> tuple[str, bytes]:
        if alg.text not in table:
            if alg.text in known:
                raise self.fail(alg, "algorithm not supported by pyike's ESP")
            raise self.fail(alg, "unknown algorithm")
        name, lengths = table[alg.text]
        key_tok = self.take()
        key = self.key(key_tok)
        if len(key) not in lengths:
            want = "/".join(str(n * 8) for n in lengths)
            # The token is the key itself: name it by its size only, never echo it.
            raise self.src.error(key_tok.start, f"<{len(key) * 8}-bit key>",
                                 f"{alg.text} needs a {want}-bit key")
        return name, key

    def key(self, tok: Token) -> bytes:
        if tok.kind == "string":
            return tok.text.encode()
        text = tok.text
        if tok.kind == "word" and text[:2].lower() == "0x" and len(text) > 2:
            digits = text[2:]
            if all(c in "0123456789abcdefABCDEF" for c in digits):
                # setkey reads an odd digit count as a leading half byte.
                return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
        raise self.src.error(tok.start, "<key>", "expected a key: 0x followed by hex digits, "
                                                 "or a quoted string")
