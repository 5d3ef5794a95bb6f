"""pyike-setkey: setkey(8) for the SPD and SAD of a running pyike, over its control socket.

    pyike-setkey [-s SOCKET] [-v] FILE ...
    pyike-setkey [-s SOCKET] [-nv] -c
    pyike-setkey [-s SOCKET] [-nv] -f FILE
    pyike-setkey [-s SOCKET] [-Palp] -D [--json]
    pyike-setkey [-s SOCKET] [-P] -F
    pyike-setkey [-s SOCKET] [-x[x]]

As setkey: -D prints the SAD (keys included, as setkey prints them; nothing else of pyike ever
shows a key), -DP the SPD, -F/-FP flush them, -f and FILE arguments run setkey.conf commands,
-c runs them from standard input statement by statement, -x prints each SA change as it
happens. A file runs all or nothing: the first statement refused is reported as
FILE:LINE:COLUMN and nothing of that file is applied. What runs lasts until pyike rereads its
configuration (reload-config, SIGHUP), which applies the configuration's setkey files again.
"""

from __future__ import annotations

import getopt
import ipaddress
import json
import sys
import time
from typing import Any

from pyike.admin import DEFAULT_SOCKET, request, stream
from pyike.show import json_document

OPTIONS = "acdf:HlnvxDFPphVrkNs:"  # setkey's getopt string, and -s for the socket
VERSION = "pyike-setkey (setkey for pyike)"
USAGE = f"""usage: pyike-setkey [-s socket] [-v] file ...
       pyike-setkey [-s socket] [-nv] -c
       pyike-setkey [-s socket] [-nv] -f filename
       pyike-setkey [-s socket] [-Palp] -D
       pyike-setkey [-s socket] [-Pv] -F
       pyike-setkey [-s socket] [-H] -x
       pyike-setkey [-V] [-h]
  -s socket   pyike's control socket (default {DEFAULT_SOCKET})
  --json      with -D or -DP: the dump as a JSON document
"""

# PF_KEY v2 numbers (RFC 2367 §2.3, and the Linux/KAME extensions), for the -x dump
PF_KEY_V2 = 2
SADB_ADD, SADB_DELETE, SADB_EXPIRE = 3, 4, 8
SADB_SATYPE_ESP = 3
SADB_EXT_SA, SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST = 1, 5, 6
SADB_STATES = {"larval": 0, "mature": 1, "dying": 2, "dead": 3}
SADB_MESSAGE = {"add": SADB_ADD, "delete": SADB_DELETE, "expire": SADB_EXPIRE}
SADB_AUTH = {"hmac-md5": 2, "hmac-sha1": 3, "hmac-sha256": 5, "hmac-sha256-96": 5}
SADB_ENCRYPT = {"3des-cbc": 3, "aes-cbc": 12}
AF_INET, AF_INET6 = 2, 10  # Linux's numbers, as setkey shows them there
SOCKADDR_LEN = {4: 16, 6: 28}


class SetkeyExit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _getopt(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """setkey's getopt: flags may be bundled (-DP), an argument follows or joins."""
    try:
        pairs, rest = getopt.getopt(argv, OPTIONS)
    except getopt.GetoptError:
        raise SetkeyExit(1, USAGE) from None
    flags: dict[str, Any] = {"x": sum(flag == "-x" for flag, _ in pairs)}
    for flag, value in pairs:
        if flag != "-x":
            flags[flag[1]] = value or True
    return flags, rest


class Setkey:
    def __init__(self, sock: str, want_json: bool, dry_run: bool) -> None:
        self.sock = sock
        self.json = want_json
        self.dry_run = dry_run

    def _ask(self, verb: str, args: list[str], want_json: bool = False) -> dict[str, Any]:
        reply = request(self.sock, verb, args, want_json)
        if not reply.get("ok"):
            raise SetkeyExit(1, str(reply.get("error", "failed")))
        return reply

    def dump(self, policies: bool, ports: bool) -> int:
        verb = "spd" if policies else "sad"
        reply = self._ask(verb, ["-p"] if ports else [], self.json)
        if self.json:
            print(json.dumps(json_document(verb, reply.get("data")), default=str))
        else:
            sys.stdout.write(reply.get("text") or "")
        return 0

    def run(self, name: str, text: str) -> None:
        """Run setkey.conf text; SetkeyExit(1) with FILE:LINE:COLUMN when refused."""
        if self.dry_run:  # -n: parse only, as setkey's "not really"
            from spd.errors import SetkeyError
            from spd.parse import parse_setkey

            try:
                parse_setkey(text, name)
            except SetkeyError as exc:
                raise SetkeyExit(1, str(exc)) from None
            return
        self._ask("setkey", [name, text])

    def run_file(self, path: str) -> int:
        try:
            if path == "-":
                text, name = sys.stdin.read(), "<stdin>"
            else:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    text, name = f.read(), path
        except OSError as exc:
            raise SetkeyExit(1, f"Can't open `{path}': {exc.strerror}") from None
        self.run(name, text)
        return 0

    def run_stdin(self) -> int:
        """setkey -c: each statement as soon as its `;` is read; a refused one is reported
        and the next ones still run (setkey's exit status stays 0)."""
        pending = ""
        for raw in sys.stdin:
            line = raw.rstrip("\n").split("#", 1)[0]
            if not line.strip():
                continue
            pending = f"{pending} {line}" if pending else line
            while ";" in pending:
                statement, pending = pending.split(";", 1)
                pending = pending.lstrip()
                try:
                    self.run("<stdin>", statement + ";")
                except SetkeyExit as exc:
                    print(exc.message)
        return 0

    def watch(self, unix_times: bool) -> int:
        """setkey -x: a time line, then each SA change in setkey's PF_KEY message dump."""
        records = stream(self.sock, "setkey-watch", [])
        reply = next(records, None)
        if reply is None or not reply.get("ok"):
            raise SetkeyExit(1, str((reply or {}).get("error", "connection closed")))
        for record in records:
            if record.get("end"):
                return 0
            sys.stdout.write(print_date(record["time"], unix_times) + sadb_dump(record) + "\n")
            sys.stdout.flush()
        return 0


def print_date(t: float, unix_times: bool) -> str:
    """setkey's printdate(): `HH:MM:SS.uuuuuu ` local time of day (-x) or `S.uuuuuu ` (-xx),
    then a line break."""
    usec = int(round((t - int(t)) * 1e6)) % 1000000
    if unix_times:
        return f"{int(t)}.{usec:06d} \n"
    tm = time.localtime(t)
    return f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{usec:06d} \n"


def _hexdump(data: bytes) -> str:
    """The kernel-debug hex dump: a blank before each 4 bytes, a break every 32."""
    out = []
    for i in range(0, len(data)):
        if i and i % 32 == 0:
            out.append("\n")
        if i % 4 == 0:
            out.append(" ")
        out.append(f"{data[i]:02x}")
    return "".join(out)


def _address_ext(kind: int, address: str) -> tuple[int, str]:
    """A source or destination address extension: (its length in 8-byte units, its dump)."""
    ip = ipaddress.ip_address(address)
    salen = SOCKADDR_LEN[ip.version]
    units = (8 + salen + 7) // 8
    family = AF_INET if ip.version == 4 else AF_INET6
    text = (f"sadb_ext{{ len={units} type={kind} }}\n"
            f"sadb_address{{ proto=0 prefixlen={ip.max_prefixlen} reserved=0x0000 }}\n"
            f"sockaddr{{ len={salen} family={family} port=0\n")
    if ip.version == 6:
        text += "  flowinfo=0x00000000, scope_id=0x00000000\n"
    return units, text + f"{_hexdump(ip.packed)}  }}\n"


def sadb_dump(record: dict[str, Any]) -> str:
    """An SA change as setkey -x prints the PF_KEY message that would carry it (header, SA
    and address extensions; the keys a kernel's message may hold are left out)."""
    exts = [(2, f"sadb_ext{{ len=2 type={SADB_EXT_SA} }}\n"
                f"sadb_sa{{ spi={record['spi']} replay=0 "
                f"state={SADB_STATES.get(record.get('state', 'mature'), 1)}\n"
                f"  auth={SADB_AUTH.get(record.get('auth', ''), 0)} "
                f"encrypt={SADB_ENCRYPT.get(record.get('enc', ''), 0)} flags=0x00000000 }}\n")]
    for kind, key in ((SADB_EXT_ADDRESS_SRC, "src"), (SADB_EXT_ADDRESS_DST, "dst")):
        if record.get(key):
            exts.append(_address_ext(kind, record[key]))
    units = 2 + sum(u for u, _ in exts)
    head = (f"sadb_msg{{ version={PF_KEY_V2} type={SADB_MESSAGE.get(record['action'], 0)} "
            f"errno=0 satype={SADB_SATYPE_ESP}\n"
            f"  len={units} reserved=0 seq=0 pid=0\n")
    return head + "".join(text for _, text in exts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    try:
        if not argv:
            raise SetkeyExit(1, USAGE)
        flags, files = _getopt(argv)
        if flags.get("V"):
            print(VERSION)
            return 1  # setkey -V exits through its usage(), with 1
        if flags.get("h"):
            raise SetkeyExit(1, USAGE)
        tool = Setkey(flags.get("s", DEFAULT_SOCKET), want_json, bool(flags.get("n")))
        if files:
            for path in files:
                tool.run_file(path)
            return 0
        if "f" in flags:
            return tool.run_file(flags["f"])
        if flags.get("c"):
            return tool.run_stdin()
        if flags.get("D"):
            return tool.dump(bool(flags.get("P")), bool(flags.get("p")))
        if flags.get("F"):
            tool.run("<flush>", "spdflush;" if flags.get("P") else "flush;")
            return 0
        if flags["x"]:
            return tool.watch(flags["x"] > 1)
        raise SetkeyExit(1, USAGE)
    except SetkeyExit as exc:
        if exc.message:
            out = sys.stdout if exc.message == USAGE else sys.stderr
            out.write(exc.message if exc.message.endswith("\n") else exc.message + "\n")
        return exc.code
    except (OSError, ValueError) as exc:
        print(f"pyike-setkey: the control socket: {exc} (is pyike running?)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
