"""Debian's strongSwan charon as a benchmark anchor, one private instance per namespace.

Each instance runs `starter --nofork` (which starts charon) inside the router's network
namespace and in a mount namespace of its own: a private tmpfs on /run (pid files and the
stroke socket) and bind mounts of this instance's strongswan.conf, ipsec.conf and
ipsec.secrets over the files in /etc. Nothing on the host is changed.

Two uses:
- the userspace ESP anchor (`throughput`): kernel-libipsec, tunnel mode, ESP in UDP 4500 (its
  libipsec has no transport mode and no raw ESP). The fwmark settings keep charon's own UDP
  packets out of the routes it installs into its TUN device.
- an IKEv1 main-mode responder (`handshake`): pre-shared key, phase 1 only (this kernel has no
  XFRM for the phase-2 SAs).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from benchmarks import procs

STARTER = "/usr/lib/ipsec/starter"
CHARON = "/usr/lib/ipsec/charon"
LIBIPSEC_PLUGIN = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"
DEB_PACKAGES = "strongswan-starter strongswan-charon libcharon-extra-plugins"

_BASE_PLUGINS = (
    "random nonce aes sha1 sha2 md5 hmac gmp pem pkcs1 x509 pubkey revocation "
    "constraints kdf socket-default stroke updown"
)

# kernel-libipsec: userspace ESP over a TUN device; IKE marked 0x42 bypasses its routes.
_LIBIPSEC_CONF = """\
charon {{
    load_modular = no
    load = {plugins} kernel-libipsec kernel-netlink
    install_virtual_ip = no
    retransmit_tries = 3
    plugins {{
        kernel-libipsec {{
            allow_peer_ts = yes
        }}
        kernel-netlink {{
            fwmark = !0x42
        }}
        socket-default {{
            fwmark = 0x42
        }}
    }}
    filelog {{
        charon {{
            path = {log}
            default = 1
        }}
    }}
}}
"""

_RESPONDER_CONF = """\
charon {{
    load_modular = no
    load = {plugins} kernel-netlink
    # Short DH exponents sized to the group's strength, as pyike uses, not X9.42 full-length.
    dh_exponent_ansi_x9_42 = no
    half_open_timeout = 30
    ikesa_table_size = 1024
    ikesa_table_segments = 16
    init_limit_half_open = 0
    threads = 16
    plugins {{
        kernel-netlink {{
            fwmark = !0x42
        }}
    }}
    filelog {{
        charon {{
            path = {log}
            default = 0
        }}
    }}
}}
"""

_TUNNEL_IPSEC_CONF = """\
config setup
    uniqueids = no

conn bench
    keyexchange = ikev2
    type = tunnel
    authby = secret
    left = {left}
    right = {right}
    leftsubnet = {left_subnet}
    rightsubnet = {right_subnet}
    ike = aes128-sha1-modp2048!
    esp = aes128-sha1!
    forceencaps = yes
    auto = {auto}
"""

_RESPONDER_IPSEC_CONF = """\
config setup
    uniqueids = no

conn hs
    keyexchange = ikev1
    aggressive = no
    authby = secret
    type = transport
    left = {left}
    right = %any
    leftprotoport = gre
    rightprotoport = gre
    ike = aes128-sha1-modp2048,aes128-sha1-modp1024!
    esp = aes128-sha1-modp2048,aes128-sha1-modp1024!
    ikelifetime = 8h
    keylife = 1h
    rekey = no
    dpdaction = none
    auto = add
"""


def require() -> None:
    """Raise procs.Missing (with the install command) unless charon and libipsec are here."""
    procs.need_binary("starter", "strongswan-starter", STARTER)
    procs.need_binary("charon", "strongswan-charon", CHARON)
    procs.need_binary("kernel-libipsec", "libcharon-extra-plugins", LIBIPSEC_PLUGIN)


class Charon:
    """One charon (via starter) inside a network namespace, with private /run and /etc files."""

    def __init__(self, netns: str, name: str) -> None:
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix=f"pyike-bench-{name}-"))
        procs.on_cleanup(self._remove_dir)
        self.log = self.dir / "charon.log"
        self.proc: subprocess.Popen | None = None

    def _remove_dir(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, strongswan_conf: str, ipsec_conf: str, secrets: str) -> None:
        files = {
            "strongswan.conf": strongswan_conf,
            "ipsec.conf": ipsec_conf,
            "ipsec.secrets": secrets,
        }
        for fname, text in files.items():
            path = self.dir / fname
            path.write_text(text)
            os.chmod(path, 0o600)
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(self.dir / fname))} /etc/{fname}" for fname in files
        )
        script = (
            "set -e; mount --make-rprivate / ; mount -t tmpfs tmpfs /run; "
            f"{mounts}; exec {STARTER} --nofork"
        )
        self.proc = procs.spawn(
            ["unshare", "--mount", "sh", "-c", script], netns=self.netns, log=str(self.dir / "out")
        )

    def start_tunnel_end(
        self, left: str, right: str, left_subnet: str, right_subnet: str, psk: str, initiate: bool
    ) -> None:
        """Tunnel-mode IKEv2 over UDP 4500 with libipsec; `initiate` starts the SA at once."""
        self.start(
            _LIBIPSEC_CONF.format(plugins=_BASE_PLUGINS, log=self.log),
            _TUNNEL_IPSEC_CONF.format(
                left=left, right=right, left_subnet=left_subnet, right_subnet=right_subnet,
                auto="start" if initiate else "add",
            ),
            f'{left} {right} : PSK "{psk}"\n',
        )

    def start_ikev1_responder(self, left: str, psk: str) -> None:
        """An IKEv1 main-mode PSK responder for any peer."""
        self.start(
            _RESPONDER_CONF.format(plugins=_BASE_PLUGINS, log=self.log),
            _RESPONDER_IPSEC_CONF.format(left=left),
            f': PSK "{psk}"\n',
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def charon_pid(self) -> int | None:
        """The charon process itself (starter's child), for CPU accounting."""
        if self.proc is None:
            return None
        for pid in procs.descendants(self.proc.pid):
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.endswith("/charon"):
                return pid
        return None

    def log_text(self) -> str:
        parts = []
        for fname in ("out", "charon.log"):
            path = self.dir / fname
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None:
            procs.finish(self.proc)
            self.proc = None

