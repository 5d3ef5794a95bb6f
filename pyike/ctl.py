"""pyikectl: racoonctl for pyike, over pyike's control socket.

    pyikectl [-d] [-l[l]] [-s SOCKET] [--json] COMMAND [ARGS...]

racoonctl's commands, short forms, options, output layouts and exit status (0 done, 1 refused
or failed; an SA that is up already counts as done), plus pyike's `status`, `spd`, `sad`.
`--json` (anywhere on the line) prints a JSON document instead: `version`, `verb`, `time` and
`data`, every time in ISO 8601; a streaming command prints one document per line.
"""

from __future__ import annotations

import getopt
import json
import sys
from collections.abc import Iterator
from typing import Any

from pyike.admin import DEFAULT_SOCKET, request, stream
from pyike.control import ALIASES, SA_TYPES, canonical
from pyike.feed import EVT_PHASE1_DOWN, EVT_PHASE1_MODE_CFG, EVT_PHASE2_UP
from pyike.show import VPN_ESTABLISHED, format_event, format_isakmp, json_document

USAGE = f"""usage:
  pyikectl [opts] reload-config|rc
  pyikectl [opts] show-schedule|sc
  pyikectl [opts] show-sa|ss isakmp|esp|ah|ipsec
  pyikectl [opts] flush-sa|fs isakmp|esp|ah|ipsec
  pyikectl [opts] delete-sa|ds <saopts>
  pyikectl [opts] delete-all-sa|da [isakmp] [inet|inet6] [src] dst
  pyikectl [opts] establish-sa|es [-w] [-n remote] <saopts>
  pyikectl [opts] vpn-connect|vc vpn_gateway
  pyikectl [opts] vpn-disconnect|vd vpn_gateway
  pyikectl [opts] show-event|se
  pyikectl [opts] status|st [-v] [-f text|json] [--format=text|json]
  pyikectl [opts] spd [-p]          the SPD as setkey -DP prints it
  pyikectl [opts] sad               the SAD as setkey -D prints it, keys included

options:
  -d          print each request to stderr before sending it
  -l          longer show-sa isakmp layout (-ll: longer still)
  -s SOCKET   the control socket (default {DEFAULT_SOCKET})
  --json      a JSON document instead of the text

  <saopts>: isakmp [inet|inet6] [src] dst
            esp [inet|inet6] src[/prefixlen][[port]] dst[/prefixlen][[port]] [ul_proto]
  -u (XAuth identity) is refused: pyike has no XAuth.
"""


GLOBAL_OPTIONS = "lds:"  # racoonctl's getopt string


class Refused(Exception):
    """A command line racoonctl refuses before asking the daemon (exit 1)."""


def _global_options(argv: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """racoonctl's getopt("lds:") with POSIXLY_CORRECT: options end at the command. None:
    print the usage (racoonctl does so, and exits 0, on an unknown option)."""
    try:
        pairs, rest = getopt.getopt(argv, GLOBAL_OPTIONS)
    except getopt.GetoptError:
        return None
    flags = [flag for flag, _ in pairs]
    socks = [value for flag, value in pairs if flag == "-s"]
    return {"long": flags.count("-l"), "debug": "-d" in flags,
            "sock": socks[-1] if socks else DEFAULT_SOCKET}, rest


def _protocol(args: list[str], allowed: tuple[str, ...] = SA_TYPES, exact: bool = True) -> str:
    if not args or (exact and len(args) != 1):
        raise Refused("insufficient arguments")
    if args[0] not in allowed:
        raise Refused(f"unknown protocol {args[0]}")
    return args[0]


class Client:
    def __init__(self, opts: dict[str, Any], want_json: bool) -> None:
        self.sock = opts["sock"]
        self.debug = opts["debug"]
        self.long = opts["long"]
        self.json = want_json

    def _trace(self, verb: str, args: list[str], want_json: bool) -> None:
        if self.debug:
            print(json.dumps({"verb": verb, "args": args, "json": want_json}), file=sys.stderr)

    def ask(self, verb: str, args: list[str], want_json: bool | None = None) -> dict[str, Any]:
        want = self.json if want_json is None else want_json
        self._trace(verb, args, want)
        return request(self.sock, verb, args, want)

    def follow(self, verb: str, args: list[str]) -> Iterator[dict[str, Any]]:
        self._trace(verb, args, True)
        return stream(self.sock, verb, args)

    def print_data(self, verb: str, data: Any) -> None:
        print(json.dumps(json_document(verb, data), default=str))

    def done(self, verb: str, reply: dict[str, Any]) -> int:
        """Print a one-shot reply; the exit status racoonctl would have."""
        if not reply.get("ok"):
            if reply.get("errno") == "EEXIST":  # racoonctl: nothing to do is success
                return 0
            print(f"pyikectl: {reply.get('error', 'failed')}", file=sys.stderr)
            return 1
        if self.json:
            self.print_data(verb, reply.get("data"))
        else:
            sys.stdout.write(reply.get("text") or "")
        return 0

    def wait(self, verb: str, args: list[str], until: int, show: str | None = None) -> int:
        """Send a streaming request and print the event it waits for (racoonctl's
        evt_quit_event); 1 when the stream ends without it."""
        records = self.follow(verb, args)
        reply = next(records, None)
        if reply is None or not reply.get("ok"):
            return self.done(verb, reply or {"ok": False, "error": "connection closed"})
        if not reply.get("stream"):
            return self.done(verb, reply)
        for record in records:
            if record.get("end"):
                break
            if record.get("type") == until:
                if self.json:
                    self.print_data(verb, record)
                else:
                    sys.stdout.write(f"{show}\n" if show else format_event(record))
                return 0
        print(f"pyikectl: {verb}: ended without the SA (see the daemon's log)", file=sys.stderr)
        return 1

    # --- the commands --------------------------------------------------------------------------

    def show_sa(self, args: list[str]) -> int:
        kind = _protocol(args)
        if kind == "isakmp" and not self.json:  # the layout depends on -l: built here
            reply = self.ask("show-sa", args, want_json=True)
            if reply.get("ok"):
                sys.stdout.write(format_isakmp(reply.get("data") or [], self.long))
                return 0
            return self.done("show-sa", reply)
        return self.done("show-sa", self.ask("show-sa", args))

    def flush_sa(self, args: list[str]) -> int:
        _protocol(args)
        return self.done("flush-sa", self.ask("flush-sa", args))

    def delete_sa(self, args: list[str]) -> int:
        _protocol(args[:1], ("isakmp", "esp", "ah"))
        return self.done("delete-sa", self.ask("delete-sa", args))

    def establish_sa(self, args: list[str]) -> int:
        if "-u" in args:
            raise Refused("-u: XAuth is not supported by pyike")
        words = [a for a in args if a != "-w"]
        if words[:1] == ["-n"]:
            words = words[2:]
        kind = _protocol(words[:1], ("isakmp", "esp", "ah"))
        if "-w" not in args:
            return self.done("establish-sa", self.ask("establish-sa", args))
        if kind == "isakmp":
            return self.wait("establish-sa", args, EVT_PHASE1_MODE_CFG, VPN_ESTABLISHED)
        return self.wait("establish-sa", args, EVT_PHASE2_UP)

    def vpn_connect(self, args: list[str]) -> int:
        if args[:1] == ["-u"]:
            raise Refused("-u: XAuth is not supported by pyike")
        if not args:
            raise Refused("VPN gateway required")
        if len(args) > 1:
            print("pyikectl: Extra arguments", file=sys.stderr)
        return self.wait("establish-sa", ["-w", "isakmp", args[0]], EVT_PHASE1_MODE_CFG,
                         VPN_ESTABLISHED)

    def vpn_disconnect(self, args: list[str]) -> int:
        if not args:
            raise Refused("VPN gateway required")
        if len(args) > 1:
            print("pyikectl: Extra arguments", file=sys.stderr)
        return self.wait("delete-all-sa", ["-w", "isakmp", args[0]], EVT_PHASE1_DOWN)

    def show_event(self, args: list[str]) -> int:
        if args:
            raise Refused("too many arguments")
        records = self.follow("show-event", [])
        reply = next(records, None)
        if reply is None or not reply.get("ok"):
            return self.done("show-event", reply or {"ok": False, "error": "connection closed"})
        for record in records:
            if record.get("end"):
                break
            if self.json:
                self.print_data("show-event", record)
            else:
                sys.stdout.write(format_event(record))
            sys.stdout.flush()
        return 1  # as racoonctl, whose stream only ends when racoon goes

    def status(self, args: list[str]) -> int:
        rest = list(args)
        while rest:
            arg = rest.pop(0)
            if arg == "-v":
                continue  # pyike's status is always the whole report
            if arg == "-f" and rest and rest[0] in ("text", "json"):
                self.json = self.json or rest.pop(0) == "json"
            elif arg in ("--format=json", "--format=text"):
                self.json = self.json or arg.endswith("json")
            else:
                raise Refused("usage: status [-v] [-f text|json] [--format=text|json]")
        return self.done("status", self.ask("status", []))


COMMANDS = {
    "show-sa": Client.show_sa, "flush-sa": Client.flush_sa, "delete-sa": Client.delete_sa,
    "establish-sa": Client.establish_sa, "vpn-connect": Client.vpn_connect,
    "vpn-disconnect": Client.vpn_disconnect, "show-event": Client.show_event,
    "status": Client.status,
}
PLAIN = ("reload-config", "show-schedule", "delete-all-sa", "spd", "sad")
KNOWN = {*COMMANDS, *PLAIN, *ALIASES}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]  # allowed anywhere, also after the verb's args
    parsed = _global_options(argv)
    if parsed is None or not parsed[1]:
        sys.stdout.write(USAGE)
        return 0  # racoonctl's status for its usage, asked for or not
    opts, (word, *args) = parsed
    if word not in KNOWN:
        print(f"Invalid command [{word}]")
        return 1
    verb = canonical(word)
    client = Client(opts, want_json)
    try:
        command = COMMANDS.get(verb)
        if command is not None:
            return command(client, args)
        return client.done(verb, client.ask(verb, args))
    except Refused as exc:
        print(f"pyikectl: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"pyikectl: cannot connect to the control socket {opts['sock']}: {exc} "
              "(is pyike running?)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # as a racoonctl stopped by SIGINT


if __name__ == "__main__":
    sys.exit(main())
