"""Rule conditions as predicates: each condition that is set becomes one named test of a
:class:`~certbound.policy.request.SignOnRequest`.

:func:`predicates` turns a rule's :class:`~certbound.policy.model.Conditions` into
``(name, predicate)`` pairs, in the order of :data:`CONDITION_NAMES`, only for the conditions
that are set. Equal conditions of different rules share one predicate object (the ``shared``
memo), so the engine tests each distinct condition once per request. Semantics:

- every ``certificate.*`` condition needs a verified device with certificate facts;
- ``certificate.issuerCa`` holds when a CA above the leaf has one of the ids or SPKI pins;
- globs (subject DN, common name, SAN values) are case-insensitive, any of;
- ``certificate.eku`` needs all the OIDs, ``certificate.policy`` any of them;
- ``certificate.daysUntilExpiry``: whole days (floor) from the request time to notAfter;
- a request without an IP fails ``network.include`` and passes ``network.exclude``; an
  unknown zone id matches no address; an IPv4-mapped IPv6 address is tested as its IPv4
  address (and IPv6 zones written as ``::ffff:a.b.c.d/n`` as their IPv4 network);
- ``timeWindow``: local time in the window's zone, ``start`` inclusive, ``end`` exclusive;
  a window whose end is before its start opens on a listed day and ends the next morning.

:data:`READS` says what each condition reads of a request (the device verdict, the
certificate facts, the user, the groups, the IP, the minute of the request time), so the
engine can reuse a condition's result for a request that reads the same.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from certbound.policy.model import (
    DAYS,
    Conditions,
    DeviceTrustRequirement,
    SanPattern,
    TimeWindow,
    Zone,
    glob,
)
from certbound.policy.request import CertificateFacts, IPAddress, SignOnRequest

Predicate = Callable[[SignOnRequest], bool]

CONDITION_NAMES = (
    "deviceTrust",
    "certificate.issuerCa",
    "certificate.subjectDn",
    "certificate.commonName",
    "certificate.serialNumber",
    "certificate.san",
    "certificate.eku",
    "certificate.policy",
    "certificate.daysUntilExpiry",
    "deviceStatus",
    "users.include",
    "users.exclude",
    "groups.anyOf",
    "groups.noneOf",
    "network.include",
    "network.exclude",
    "timeWindow",
)
# What each condition reads of a request: the engine reuses a condition's result for a
# request that reads the same (the same certificate facts, user, groups, IP or minute).
READS = {
    "deviceTrust": "device",
    "certificate.issuerCa": "certificate",
    "certificate.subjectDn": "certificate",
    "certificate.commonName": "certificate",
    "certificate.serialNumber": "certificate",
    "certificate.san": "certificate",
    "certificate.eku": "certificate",
    "certificate.policy": "certificate",
    "certificate.daysUntilExpiry": "certificate+time",
    "deviceStatus": "device",
    "users.include": "user",
    "users.exclude": "user",
    "groups.anyOf": "groups",
    "groups.noneOf": "groups",
    "network.include": "ip",
    "network.exclude": "ip",
    "timeWindow": "minute",
}
_DAY = dt.timedelta(days=1)
_MEMO = 4096
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class Compilation:
    """What the predicates of one policy share: one predicate per distinct condition, and
    one look-up of the zones an address is in."""

    __slots__ = ("predicates", "zones")

    def __init__(self, zones: Mapping[str, Zone]) -> None:
        self.zones = ZoneLookup(zones)
        self.predicates: dict[tuple[Any, ...], Predicate] = {}

    def predicate(self, key: tuple[Any, ...]) -> Predicate:
        """The predicate of a condition key (see :func:`condition_keys`), built once."""
        found = self.predicates.get(key)
        if found is None:
            name, parameters = key[0], key[1:]
            if name.startswith("network."):
                parameters = (self.zones, *parameters)
            found = self.predicates[key] = _BUILDERS[name](*parameters)
        return found


def predicates(
    conditions: Conditions, zones: Mapping[str, Zone] | Compilation
) -> tuple[tuple[str, Predicate], ...]:
    """The ``(name, predicate)`` pairs of the conditions that are set (none: match all).
    Pass one :class:`Compilation` for all the rules of a policy to share predicates."""
    compilation = zones if isinstance(zones, Compilation) else Compilation(zones)
    return tuple((key[0], compilation.predicate(key)) for key in condition_keys(conditions))


def condition_keys(conditions: Conditions) -> list[tuple[Any, ...]]:
    """Each set condition as ``(name, *parameters)``, in :data:`CONDITION_NAMES` order;
    equal keys test the same thing."""
    c, cert = conditions, conditions.certificate
    keys: list[tuple[Any, ...]] = []
    if c.device_trust is not DeviceTrustRequirement.ANY:
        keys.append(("deviceTrust", c.device_trust is DeviceTrustRequirement.VERIFIED))
    if cert.issuer_ca_ids or cert.issuer_spki_pins:
        ids, pins = frozenset(cert.issuer_ca_ids), frozenset(cert.issuer_spki_pins)
        keys.append(("certificate.issuerCa", ids, pins))
    for name, values in (
        ("certificate.subjectDn", cert.subject_dn),
        ("certificate.commonName", cert.common_name),
        ("certificate.serialNumber", cert.serial_numbers),
        ("certificate.san", cert.sans),
        ("certificate.eku", cert.eku_oids),
        ("certificate.policy", cert.policy_oids),
    ):
        if values:
            keys.append((name, frozenset(values)))
    low, high = cert.min_days_until_expiry, cert.max_days_until_expiry
    if low is not None or high is not None:
        keys.append(("certificate.daysUntilExpiry", low, high))
    for name, values in (
        ("deviceStatus", c.device_status),
        ("users.include", c.users.include),
        ("users.exclude", c.users.exclude),
        ("groups.anyOf", c.groups.any_of),
        ("groups.noneOf", c.groups.none_of),
        ("network.include", c.network.include),
        ("network.exclude", c.network.exclude),
    ):
        if values:
            keys.append((name, frozenset(values)))
    if c.time_window is not None:
        keys.append(("timeWindow", c.time_window))
    return keys


# --- device, user, group ---------------------------------------------------------------------


def _device_trust(verified: bool) -> Predicate:
    if verified:
        return lambda r: r.device_verified
    return lambda r: not r.device_verified


def _device_status(statuses: frozenset[str]) -> Predicate:
    return lambda r: r.device_status in statuses


def _users_include(users: frozenset[str]) -> Predicate:
    return lambda r: r.user_id in users


def _users_exclude(users: frozenset[str]) -> Predicate:
    return lambda r: r.user_id not in users


def _groups_any_of(groups: frozenset[str]) -> Predicate:
    return lambda r: not r.group_ids.isdisjoint(groups)


def _groups_none_of(groups: frozenset[str]) -> Predicate:
    return lambda r: r.group_ids.isdisjoint(groups)


# --- certificate -----------------------------------------------------------------------------


def _on_facts(test: Callable[[CertificateFacts, SignOnRequest], bool]) -> Predicate:
    """A certificate test that fails without a verified device and its facts."""

    def predicate(r: SignOnRequest) -> bool:
        facts = r.certificate
        return r.device_verified and facts is not None and test(facts, r)

    return predicate


def _globs(patterns: Iterable[str]) -> Callable[[str], bool]:
    """True when the text matches any of the globs."""
    globs = tuple(glob(p) for p in sorted(patterns))
    return lambda text: any(match(text) for match in globs)


def _issuer(ids: frozenset[str], pins: frozenset[str]) -> Predicate:
    return _on_facts(
        lambda f, r: not ids.isdisjoint(f.ca_ids) or not pins.isdisjoint(f.ca_spki_pins)
    )


def _subject_dn(patterns: frozenset[str]) -> Predicate:
    match = _globs(patterns)
    return _on_facts(lambda f, r: match(f.subject_dn))


def _common_name(patterns: frozenset[str]) -> Predicate:
    match = _globs(patterns)
    return _on_facts(lambda f, r: f.common_name is not None and match(f.common_name))


def _serial(serials: frozenset[str]) -> Predicate:
    return _on_facts(lambda f, r: f.serial_number in serials)


def _eku(oids: frozenset[str]) -> Predicate:
    return _on_facts(lambda f, r: oids <= f.eku_oids)


def _policy(oids: frozenset[str]) -> Predicate:
    return _on_facts(lambda f, r: not oids.isdisjoint(f.policy_oids))


def _sans(patterns: frozenset[SanPattern]) -> Predicate:
    by_type: dict[str, list[str]] = {}
    for san in patterns:
        by_type.setdefault(san.type, []).append(san.pattern)
    matchers = {kind: _globs(globs) for kind, globs in by_type.items()}

    def test(facts: CertificateFacts, r: SignOnRequest) -> bool:
        for kind, value in facts.sans:
            match = matchers.get(kind)
            if match is not None and match(value):
                return True
        return False

    return _on_facts(test)


def days_until_expiry(facts: CertificateFacts, at: dt.datetime) -> int:
    """Whole days (floor) from ``at`` to the certificate's notAfter."""
    return (facts.not_after - at) // _DAY


def _days(low: int | None, high: int | None) -> Predicate:
    def test(facts: CertificateFacts, r: SignOnRequest) -> bool:
        days = days_until_expiry(facts, r.at)
        return (low is None or days >= low) and (high is None or days <= high)

    return _on_facts(test)


# --- network ---------------------------------------------------------------------------------


def _network_include(lookup: ZoneLookup, zone_ids: frozenset[str]) -> Predicate:
    zones_of = lookup.zones_of
    return lambda r: r.ip is not None and not zones_of(r.ip).isdisjoint(zone_ids)


def _network_exclude(lookup: ZoneLookup, zone_ids: frozenset[str]) -> Predicate:
    zones_of = lookup.zones_of
    return lambda r: r.ip is None or zones_of(r.ip).isdisjoint(zone_ids)


_Table = tuple[tuple[int, dict[int, frozenset[str]]], ...]


class ZoneLookup:
    """The zones an address is in: per prefix length, a dict from network to zone ids, so
    a look-up costs one probe per distinct prefix length, however many networks the zones
    hold (memoised per address). IPv4-mapped IPv6 addresses, and IPv6 networks inside
    ``::ffff:0:0/96``, are treated as IPv4."""

    __slots__ = ("_last", "_memo", "_v4", "_v6")

    def __init__(self, zones: Mapping[str, Zone]) -> None:
        tables: dict[int, dict[int, dict[int, set[str]]]] = {4: {}, 6: {}}
        for zone in zones.values():
            for cidr in zone.cidrs:
                net = _plain(ipaddress.ip_network(cidr, strict=False))
                by_network = tables[net.version].setdefault(int(net.netmask), {})
                by_network.setdefault(int(net.network_address), set()).add(zone.id)
        self._v4, self._v6 = (
            tuple(
                (mask, {net: frozenset(ids) for net, ids in nets.items()})
                for mask, nets in sorted(tables[version].items(), reverse=True)
            )
            for version in (4, 6)
        )
        self._memo: dict[IPAddress, frozenset[str]] = {}
        # The last answer, for the other network conditions of the same request.
        self._last: tuple[IPAddress | None, frozenset[str]] = (None, frozenset())

    def zones_of(self, ip: IPAddress) -> frozenset[str]:
        last_ip, last_zones = self._last
        if ip is last_ip:
            return last_zones
        found = self._memo.get(ip)
        if found is None:
            value, v4 = _as_int(ip)
            found = frozenset(
                zone_id
                for mask, nets in (self._v4 if v4 else self._v6)
                for zone_id in nets.get(value & mask, ())
            )
            if len(self._memo) >= _MEMO:
                self._memo.clear()
            self._memo[ip] = found
        self._last = (ip, found)
        return found


def _plain(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    """An IPv6 network inside ``::ffff:0:0/96`` as its IPv4 network; others unchanged."""
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, max(net.prefixlen - 96, 0)), strict=False)
    return net


def _as_int(ip: IPAddress) -> tuple[int, bool]:
    """The address as an integer, and whether it is IPv4 (an IPv4-mapped IPv6 address is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        return (int(ip), False) if mapped is None else (int(mapped), True)
    return int(ip), True


# --- time ------------------------------------------------------------------------------------


def _time_window(window: TimeWindow) -> Predicate:
    tz = zoneinfo.ZoneInfo(window.timezone)
    days = frozenset(DAYS.index(d) for d in window.days)
    start, end = _minutes(window.start), _minutes(window.end)

    def predicate(r: SignOnRequest) -> bool:
        local = r.at.astimezone(tz)
        minute, day = local.hour * 60 + local.minute, local.weekday()
        if start < end:
            return day in days and start <= minute < end
        if minute >= start:
            return day in days
        return minute < end and (day - 1) % 7 in days

    return predicate


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


_BUILDERS: dict[str, Callable[..., Predicate]] = {
    "deviceTrust": _device_trust,
    "certificate.issuerCa": _issuer,
    "certificate.subjectDn": _subject_dn,
    "certificate.commonName": _common_name,
    "certificate.serialNumber": _serial,
    "certificate.san": _sans,
    "certificate.eku": _eku,
    "certificate.policy": _policy,
    "certificate.daysUntilExpiry": _days,
    "deviceStatus": _device_status,
    "users.include": _users_include,
    "users.exclude": _users_exclude,
    "groups.anyOf": _groups_any_of,
    "groups.noneOf": _groups_none_of,
    "network.include": _network_include,
    "network.exclude": _network_exclude,
    "timeWindow": _time_window,
}
