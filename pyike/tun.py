"""The TUN side of a `gre` block and of the tunnel-mode device: the device (python-pytun), its
address, peer, MTU, link state and routes (pyroute2)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytun
from pyroute2 import IPRoute

import gre
from esp.algorithms import max_payload

log = logging.getLogger("pyike.tun")

IPV4_HEADER = 20  # RFC 791 without options
IPV6_HEADER = 40  # RFC 8200
DEFAULT_OUTER_MTU = 1500
# each device's IPv6 settings, of the namespace the process runs in (ip-sysctl.txt)
IPV6_CONF = Path("/proc/sys/net/ipv6/conf")


def inner_mtu(outer_mtu: int, *, ipv6: bool = False, gre_key: bool = False,
              enc_alg: str | None = None, auth_alg: str | None = None) -> int:
    """The largest inner packet that fits one outer packet after GRE and ESP transport mode:
    for one ESP algorithm pair, or by default for whichever pair an SA may come to use (esp's
    tables), so that neither a proposal nor a hand-keyed SA nor a rekey needs another MTU."""
    room = outer_mtu - (IPV6_HEADER if ipv6 else IPV4_HEADER)
    return max_payload(room, enc_alg, auth_alg) - gre.header_length(key=0 if gre_key else None)


def tunnel_mode_mtu(outer_mtu: int, *, ipv6: bool = False) -> int:
    """The largest inner packet ESP tunnel mode carries in one outer packet: the whole packet is
    ESP's payload (RFC 4303 §3.1.2), for whichever algorithm pair an SA may come to use."""
    return max_payload(outer_mtu - (IPV6_HEADER if ipv6 else IPV4_HEADER))


def outer_mtu_towards(remote: str) -> int:
    """The MTU of the link the kernel routes `remote` over: the outer path MTU as we know it."""
    try:
        with IPRoute() as ipr:
            routes = ipr.route("get", dst=remote)
            oif = routes[0].get_attr("RTA_OIF") if routes else None
            if oif is None:
                return DEFAULT_OUTER_MTU
            link = ipr.link("get", index=oif)[0]
            return int(link.get_attr("IFLA_MTU") or DEFAULT_OUTER_MTU)
    except Exception as exc:  # no route yet: fall back to Ethernet's MTU
        log.debug("no route to %s for the MTU (%s); assuming %d", remote, exc, DEFAULT_OUTER_MTU)
        return DEFAULT_OUTER_MTU


def host_interfaces() -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """This namespace's global unicast addresses with their prefixes (no loopback, no
    link-local)."""
    out = []
    try:
        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                iface = ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/"
                                               f"{msg['prefixlen']}")
                if not (iface.ip.is_loopback or iface.ip.is_link_local):
                    out.append(iface)
    except Exception as exc:  # no netlink: the caller falls back on what it knows
        log.debug("cannot list addresses: %s", exc)
    return out


def host_addresses() -> list[str]:
    """This namespace's global unicast addresses (no loopback, no link-local)."""
    return [str(iface.ip) for iface in host_interfaces()]


def _host_prefix(address: str) -> int:
    return 32 if ipaddress.ip_address(address).version == 4 else 128


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


class TunDevice:
    """One point-to-point TUN device carrying raw IP packets (no packet-information header;
    pyike's own with a virtio-net header in front of each, see forward.gro).

    A device of that name that exists already (`ip tuntap add dev NAME mode tun`: persistent)
    is adopted, not made: pyike attaches to it and leaves it, its addresses and the routes
    through it in place when it lets go. With no reader the kernel drops what is routed into it,
    so while pyike is down nothing for the far LAN leaves at all, in clear or otherwise.
    """

    def __init__(self, name: str, address: str | None, peer: str | None, mtu: int, *,
                 vnet_header: bool = True) -> None:
        """address/peer None: a device without addresses (tunnel mode's, which is only routed
        into). With `vnet_header` every read and write starts with a virtio-net header
        (IFF_VNET_HDR), which lets a write carry many TCP segments (forward.gro)."""
        self.name = name
        self.address = address
        self.peer = peer
        self.mtu = mtu
        self.adopted = link_exists(name)
        # on an existing device of another kind (or one another process holds) this fails
        flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if vnet_header else 0)
        self._dev = pytun.TunTapDevice(name=name, flags=flags)
        self._configure()

    def _configure(self) -> None:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self._dev.name)[0]
            ipr.link("set", index=index, mtu=self.mtu)
            if self.address is not None:
                # an adopted device may hold the address from our last run already
                ipr.addr("replace" if self.adopted else "add", index=index, local=self.address,
                         address=self.peer, prefixlen=_host_prefix(self.address))
            ipr.link("set", index=index, state="up")

    def reconfigure(self, address: str, peer: str, mtu: int) -> None:
        """New address, peer or MTU on the same device: its descriptor (and routes through
        it that do not depend on the old peer) stay."""
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self._dev.name)[0]
            if mtu != self.mtu:
                ipr.link("set", index=index, mtu=mtu)
                self.mtu = mtu
            if (address, peer) != (self.address, self.peer):
                ipr.addr("del", index=index, local=self.address, address=self.peer,
                         prefixlen=_host_prefix(self.address))
                ipr.addr("add", index=index, local=address, address=peer,
                         prefixlen=_host_prefix(address))
                self.address, self.peer = address, peer

    def set_routes(self, wanted: dict[str, str | None], have: dict[str, str | None]) -> None:
        """Routes through this device: `wanted` (network -> preferred source address or None)
        replace `have`, which is updated as routes are made and removed. A route that fails is
        logged and left out of `have` (it is tried again at the next change)."""
        if any(ipaddress.ip_network(net).version == 6 for net in wanted):
            self._ipv6_on()
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self._dev.name)[0]
            for net in [n for n in have if n not in wanted]:
                try:
                    ipr.route("del", dst=net, oif=index)
                except Exception as exc:  # gone already (the device went down, say)
                    log.debug("%s: route %s not removed: %s", self.name, net, exc)
                del have[net]
            for net, src in wanted.items():
                if have.get(net, "") == src:
                    continue
                extra = {"prefsrc": src} if src else {}
                try:
                    ipr.route("replace", dst=net, oif=index, **extra)
                except Exception as exc:
                    log.error("%s: cannot route %s into the device: %s", self.name, net, exc)
                    have.pop(net, None)
                else:
                    have[net] = src

    def _ipv6_on(self) -> None:
        """IPv6 on for this device, which an IPv6 network is to be routed into: the kernel
        refuses such a route into a device whose IPv6 is off ("IPv6 is disabled on nexthop
        device"), as every new device is on a host that sets net.ipv6.conf.default.disable_ipv6,
        and pyike makes the device before anyone could turn it on. A kernel without IPv6 has
        no such setting: the route then fails and is logged."""
        knob = IPV6_CONF / self.name / "disable_ipv6"
        try:
            if knob.read_text().strip() != "0":
                knob.write_text("0")
                log.info("%s: IPv6 turned on, for the IPv6 networks routed into it", self.name)
        except OSError as exc:
            log.debug("%s: IPv6 not turned on: %s", self.name, exc)

    def fileno(self) -> int:
        return self._dev.fileno()

    def close(self) -> None:
        """Closing the only descriptor of a device pyike made removes it; an adopted device
        (persistent) stays, without carrier, dropping what is routed into it."""
        try:
            self._dev.close()
        except OSError:
            pass
