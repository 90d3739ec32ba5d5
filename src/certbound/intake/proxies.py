"""Trusted proxies: the socket peers whose client-certificate headers count.

``trusted_proxies`` lists CIDRs (IPv4 or IPv6; a bare address is a /32 or /128) and
``"unix"``, the plain-HTTP listener's Unix socket (only processes allowed to open the socket
file reach it). Trust is decided on the socket peer alone: ``X-Forwarded-For`` and friends
are claims the peer makes, never evidence. An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, what
a dual-stack socket reports for an IPv4 client) matches IPv4 CIDRs. An empty list trusts no
one, and a TCP peer whose address is unknown is never trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from certbound.config import ConfigError

UNIX = "unix"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _network(entry: str) -> Network:
    if "%" in entry:
        raise ConfigError(
            f"trusted_proxies: {entry!r} has an IPv6 zone (%...); list the address without it"
        )
    try:
        return ipaddress.ip_network(entry, strict=True)
    except ValueError as exc:
        hint = ""
        try:
            loose = ipaddress.ip_network(entry, strict=False)
            hint = f"; host bits are set: did you mean {loose}?"
        except ValueError:
            hint = f' ({exc}); use a CIDR such as 10.0.0.0/8 or ::1, or "{UNIX}"'
        raise ConfigError(f"trusted_proxies: {entry!r} is not a network{hint}") from None


def _address(host: str) -> Address | None:
    # "[::1]" as some servers print it; a zone ("fe80::1%eth0") says nothing about trust.
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The parsed ``trusted_proxies`` setting; :meth:`trusts` is called on every request."""

    v4: tuple[ipaddress.IPv4Network, ...] = ()
    v6: tuple[ipaddress.IPv6Network, ...] = ()
    unix: bool = False

    @classmethod
    def parse(cls, entries: Sequence[str]) -> TrustedProxies:
        """Parse the setting; :class:`~certbound.config.ConfigError` names a bad entry."""
        v4: list[ipaddress.IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        unix = False
        for raw in entries:
            entry = raw.strip()
            if entry.lower() == UNIX:
                unix = True
                continue
            network = _network(entry)
            if isinstance(network, ipaddress.IPv4Network):
                v4.append(network)
            else:
                v6.append(network)
        return cls(tuple(v4), tuple(v6), unix)

    @property
    def empty(self) -> bool:
        """True when no peer at all is trusted."""
        return not (self.v4 or self.v6 or self.unix)

    def trusts(self, peer_host: str | None, *, unix: bool) -> bool:
        """Whether a peer's certificate headers count. ``unix``: it came over the Unix-socket
        listener (``peer_host`` is then ignored); else ``peer_host`` is its IP address."""
        if unix:
            return self.unix
        if peer_host is None:
            return False
        address = _address(peer_host)
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped
            if mapped is not None and any(mapped in net for net in self.v4):
                return True
            return any(address in net for net in self.v6)
        return any(address in net for net in self.v4)

    def describe(self) -> list[str]:
        """The entries in canonical form (what ``serve`` prints and events may record)."""
        names = [str(net) for net in (*self.v4, *self.v6)]
        return [*names, UNIX] if self.unix else names
