"""The sign-on policy model: policies, their ordered rules, rule conditions, network zones,
and their JSON form.

A policy's ``rules`` are in priority order (index 0 = priority 1); the first rule whose
conditions all hold decides, and the last rule is the catch-all (no conditions). Every
``from_dict`` checks its input and raises ``POLICY_INVALID`` with the path of the field at
fault (``rules[2].conditions.network.include[0]: ...``); ``to_dict`` writes conditions
compactly (only what is set) and ``from_dict(to_dict(x)) == x``. Glob patterns are
case-insensitive ``*`` / ``?`` wildcards (``[`` is literal), compiled once by
:class:`Glob`.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from certbound.errors import CertboundError, ReasonCode

POLICY_PREFIX = "pol_"
RULE_PREFIX = "rul_"
ZONE_PREFIX = "nzn_"
USER_PREFIX = "usr_"
GROUP_PREFIX = "grp_"
CA_PREFIX = "ca_"
MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 1000
MAX_PATTERN_LENGTH = 1024
MAX_RULES = 1000
MAX_CIDRS = 10000
SAN_TYPES = ("dns", "email", "uri", "ip", "upn")
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
DEVICE_STATUSES = ("ACTIVE", "SUSPENDED", "DEACTIVATED")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_HEX = re.compile(r"^[0-9A-F]+$")
_PIN = re.compile(r"^[0-9a-f]{64}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_T = TypeVar("_T")


class Action(enum.StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class Verdict(enum.StrEnum):
    MATCHED = "MATCHED"
    NOT_MATCHED = "NOT_MATCHED"
    NOT_EVALUATED = "NOT_EVALUATED"


class DeviceTrustRequirement(enum.StrEnum):
    """ANY: no condition. VERIFIED: a certificate that passed device trust (chain, validity,
    EKU, revocation, device status). NOT_VERIFIED: no verified certificate (DENY rules)."""

    ANY = "ANY"
    VERIFIED = "VERIFIED"
    NOT_VERIFIED = "NOT_VERIFIED"


def invalid(path: str, detail: str) -> CertboundError:
    """POLICY_INVALID naming the field at fault."""
    return CertboundError(ReasonCode.POLICY_INVALID, f"{path}: {detail}", {"field": path})


class Glob:
    """A compiled glob: ``*`` any run, ``?`` one character, everything else (``[`` included)
    literal, case-insensitive, matching the whole text.

    It is matched in time linear in the text for each literal piece, never by a
    backtracking regex over ``.*`` (``*a*a*a...*b`` against a long run of ``a`` would take
    seconds and hold the interpreter): the pieces between stars have fixed lengths, so the
    first must match at the start, the last at the end, and each middle one at its leftmost
    place after the one before (leftmost is never worse for the pieces after it).
    """

    __slots__ = ("_ends", "_first", "_last", "_middle")

    def __init__(self, pattern: str) -> None:
        parts = pattern.split("*")
        pieces = [_piece(part) for part in parts]
        self._first = pieces[0] if len(pieces) > 1 else None
        self._last = pieces[-1]
        self._middle = tuple(pieces[1:-1])
        self._ends = (len(parts[0]), len(parts[-1]))

    def __call__(self, text: str) -> bool:
        if self._first is None:  # no star: the whole text is the one piece
            return self._last.fullmatch(text) is not None
        head, tail = self._ends
        end = len(text) - tail
        if end < head or not self._first.match(text) or not self._last.fullmatch(text, end):
            return False
        position = head
        for piece in self._middle:
            found = piece.search(text, position, end)
            if found is None:
                return False
            position = found.end()
        return True


def _piece(part: str) -> re.Pattern[str]:
    """A fixed-length piece of a glob: literals and ``?`` (no quantifier: no backtracking)."""
    return re.compile(
        "".join("." if char == "?" else re.escape(char) for char in part),
        re.IGNORECASE | re.DOTALL,
    )


@functools.lru_cache(maxsize=4096)
def glob(pattern: str) -> Glob:
    """The compiled glob of ``pattern`` (cached)."""
    return Glob(pattern)


# --- reading JSON ----------------------------------------------------------------------------


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _object(data: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise invalid(path or "(root)", "must be an object")
    for key in data:
        if key not in allowed:
            raise invalid(_at(path, str(key)), "unknown key")
    return data


def _string(value: Any, path: str, *, max_length: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str):
        raise invalid(path, "must be a string")
    if not value.strip() or len(value) > max_length or not value.isprintable():
        raise invalid(path, f"must be 1 to {max_length} printable characters")
    return value


def _list(value: Any, path: str, item: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    if not isinstance(value, list | tuple):
        raise invalid(path, "must be a list")
    out = tuple(item(v, _at(path, i)) for i, v in enumerate(value))
    seen: set[_T] = set()
    for i, v in enumerate(out):
        if v in seen:
            raise invalid(_at(path, i), f"{v!r} is listed twice")
        seen.add(v)
    return out


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(path, "must be true or false")
    return value


def _days_bound(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36500:
        raise invalid(path, "must be null or a whole number of days from 0 to 36500")
    return value


def _prefixed(prefix: str, what: str) -> Callable[[Any, str], str]:
    def check(value: Any, path: str) -> str:
        text = _string(value, path)
        if not text.startswith(prefix) or len(text) == len(prefix):
            raise invalid(path, f"{text!r} is not a {what} id ({prefix}...)")
        return text

    return check


def _glob(value: Any, path: str) -> str:
    text = _string(value, path, max_length=MAX_PATTERN_LENGTH)
    glob(text)
    return text


def _oid(value: Any, path: str) -> str:
    text = _string(value, path)
    if not _OID.match(text):
        raise invalid(path, f"{text!r} is not a dotted-decimal OID")
    return text


def _serial(value: Any, path: str) -> str:
    """Upper-case hex of even length, as certificates' serials are shown; colons dropped."""
    text = _string(value, path).replace(":", "").upper()
    if not _HEX.match(text):
        raise invalid(path, f"{value!r} is not a hexadecimal serial number")
    text = text.lstrip("0") or "0"
    return text if len(text) % 2 == 0 else "0" + text


def _pin(value: Any, path: str) -> str:
    text = _string(value, path).lower()
    if not _PIN.match(text):
        raise invalid(path, "must be the SHA-256 hex (64 characters) of a CA's SPKI")
    return text


def _enum_value(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, path: str) -> str:
        if value not in choices:
            raise invalid(path, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)

    return check


def _cidr(value: Any, path: str) -> str:
    text = _string(value, path)
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise invalid(path, f"{text!r} is not an IPv4 or IPv6 CIDR") from None


def _enum(kind: type[enum.StrEnum], value: Any, path: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise invalid(path, f"{value!r} is not one of {choices}") from None


def _compact(**items: Any) -> dict[str, Any]:
    """Only the keys whose value is set (non-empty, not None)."""
    return {k: v for k, v in items.items() if v not in (None, [], {}, ())}


# --- conditions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SanPattern:
    """A SAN condition: the SAN type (dns, email, uri, ip, upn) and a glob over its value."""

    type: str
    pattern: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "pattern": self.pattern}

    @classmethod
    def from_dict(cls, data: Any, path: str = "san") -> SanPattern:
        obj = _object(data, path, ("type", "pattern"))
        if "type" not in obj or "pattern" not in obj:
            raise invalid(path, "needs both type and pattern")
        kind = _enum_value(SAN_TYPES)(obj["type"], _at(path, "type"))
        return cls(type=kind, pattern=_glob(obj["pattern"], _at(path, "pattern")))


_CERT_KEYS = (
    "issuerCaIds",
    "issuerSpkiPins",
    "subjectDn",
    "commonName",
    "serialNumbers",
    "sans",
    "ekuOids",
    "policyOids",
    "minDaysUntilExpiry",
    "maxDaysUntilExpiry",
)


@dataclass(frozen=True, slots=True)
class CertificateConditions:
    """Conditions on the verified certificate; an empty field is no condition, and any set
    field fails a request without a verified certificate. CA ids and pins match any CA on
    the validated path above the leaf; lists are "any of" except ``eku_oids`` (all of)."""

    issuer_ca_ids: tuple[str, ...] = ()
    issuer_spki_pins: tuple[str, ...] = ()
    subject_dn: tuple[str, ...] = ()
    common_name: tuple[str, ...] = ()
    serial_numbers: tuple[str, ...] = ()
    sans: tuple[SanPattern, ...] = ()
    eku_oids: tuple[str, ...] = ()
    policy_oids: tuple[str, ...] = ()
    min_days_until_expiry: int | None = None
    max_days_until_expiry: int | None = None

    @property
    def empty(self) -> bool:
        return self == _NO_CERTIFICATE_CONDITIONS

    def to_dict(self) -> dict[str, Any]:
        return _compact(
            issuerCaIds=list(self.issuer_ca_ids),
            issuerSpkiPins=list(self.issuer_spki_pins),
            subjectDn=list(self.subject_dn),
            commonName=list(self.common_name),
            serialNumbers=list(self.serial_numbers),
            sans=[s.to_dict() for s in self.sans],
            ekuOids=list(self.eku_oids),
            policyOids=list(self.policy_oids),
            minDaysUntilExpiry=self.min_days_until_expiry,
            maxDaysUntilExpiry=self.max_days_until_expiry,
        )

    @classmethod
    def from_dict(cls, data: Any, path: str = "certificate") -> CertificateConditions:
        obj = _object(data, path, _CERT_KEYS)

        def get(key: str, item: Callable[[Any, str], _T]) -> tuple[_T, ...]:
            return _list(obj.get(key, []), _at(path, key), item)

        return cls(
            issuer_ca_ids=get("issuerCaIds", _prefixed(CA_PREFIX, "CA")),
            issuer_spki_pins=get("issuerSpkiPins", _pin),
            subject_dn=get("subjectDn", _glob),
            common_name=get("commonName", _glob),
            serial_numbers=get("serialNumbers", _serial),
            sans=get("sans", SanPattern.from_dict),
            eku_oids=get("ekuOids", _oid),
            policy_oids=get("policyOids", _oid),
            min_days_until_expiry=_days_bound(
                obj.get("minDaysUntilExpiry"), _at(path, "minDaysUntilExpiry")
            ),
            max_days_until_expiry=_days_bound(
                obj.get("maxDaysUntilExpiry"), _at(path, "maxDaysUntilExpiry")
            ),
        )


_NO_CERTIFICATE_CONDITIONS = CertificateConditions()


def _include_exclude(
    data: Any, path: str, keys: tuple[str, str], item: Callable[[Any, str], str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    obj = _object(data, path, keys)
    first = _list(obj.get(keys[0], []), _at(path, keys[0]), item)
    second = _list(obj.get(keys[1], []), _at(path, keys[1]), item)
    return first, second


@dataclass(frozen=True, slots=True)
class UserConditions:
    """User ids (``usr_...``): include empty = anyone, non-empty requires one of them."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _compact(include=list(self.include), exclude=list(self.exclude))

    @classmethod
    def from_dict(cls, data: Any, path: str = "users") -> UserConditions:
        keys = ("include", "exclude")
        include, exclude = _include_exclude(data, path, keys, _prefixed(USER_PREFIX, "user"))
        return cls(include=include, exclude=exclude)


@dataclass(frozen=True, slots=True)
class GroupConditions:
    """Group ids (``grp_...``): member of any of ``any_of``, and of none of ``none_of``."""

    any_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _compact(anyOf=list(self.any_of), noneOf=list(self.none_of))

    @classmethod
    def from_dict(cls, data: Any, path: str = "groups") -> GroupConditions:
        keys = ("anyOf", "noneOf")
        any_of, none_of = _include_exclude(data, path, keys, _prefixed(GROUP_PREFIX, "group"))
        return cls(any_of=any_of, none_of=none_of)


@dataclass(frozen=True, slots=True)
class NetworkConditions:
    """Zone ids (``nzn_...``): a request without an IP fails include and passes exclude."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _compact(include=list(self.include), exclude=list(self.exclude))

    @classmethod
    def from_dict(cls, data: Any, path: str = "network") -> NetworkConditions:
        keys = ("include", "exclude")
        include, exclude = _include_exclude(data, path, keys, _prefixed(ZONE_PREFIX, "zone"))
        return cls(include=include, exclude=exclude)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Local time ``start`` (inclusive) to ``end`` (exclusive) on ``days`` in ``timezone``.
    When ``end < start`` the window wraps past midnight: it opens on a listed day and
    closes the next morning."""

    days: tuple[str, ...]
    start: str
    end: str
    timezone: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "start": self.start,
            "end": self.end,
            "timezone": self.timezone,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "timeWindow") -> TimeWindow:
        obj = _object(data, path, ("days", "start", "end", "timezone"))
        for key in ("start", "end", "timezone"):
            if key not in obj:
                raise invalid(_at(path, key), "is required")
        days = _list(obj.get("days", list(DAYS)), _at(path, "days"), _enum_value(DAYS))
        if not days:
            raise invalid(_at(path, "days"), "name at least one day (MON..SUN)")
        start, end = (_hhmm(obj[k], _at(path, k)) for k in ("start", "end"))
        if start == end:
            raise invalid(_at(path, "end"), "must differ from start")
        return cls(days=days, start=start, end=end, timezone=_tz(obj["timezone"], path))


def _hhmm(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise invalid(path, f"{value!r} is not a time HH:MM (00:00 to 23:59)")
    return value


def _tz(value: Any, path: str) -> str:
    where = _at(path, "timezone")
    name = _string(value, where)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise invalid(where, f"{name!r} is not an IANA time zone") from None
    return name


_CONDITION_KEYS = (
    "deviceTrust",
    "certificate",
    "deviceStatus",
    "users",
    "groups",
    "network",
    "timeWindow",
)


@dataclass(frozen=True, slots=True)
class Conditions:
    """A rule's conditions; every one must hold for the rule to match. Unset = no condition."""

    device_trust: DeviceTrustRequirement = DeviceTrustRequirement.ANY
    certificate: CertificateConditions = field(default_factory=CertificateConditions)
    device_status: tuple[str, ...] = ()
    users: UserConditions = field(default_factory=UserConditions)
    groups: GroupConditions = field(default_factory=GroupConditions)
    network: NetworkConditions = field(default_factory=NetworkConditions)
    time_window: TimeWindow | None = None

    @property
    def empty(self) -> bool:
        """True when no condition is set: the rule matches every request."""
        return self == _NO_CONDITIONS

    def to_dict(self) -> dict[str, Any]:
        trust = self.device_trust
        return _compact(
            deviceTrust=None if trust is DeviceTrustRequirement.ANY else trust.value,
            certificate=self.certificate.to_dict(),
            deviceStatus=list(self.device_status),
            users=self.users.to_dict(),
            groups=self.groups.to_dict(),
            network=self.network.to_dict(),
            timeWindow=None if self.time_window is None else self.time_window.to_dict(),
        )

    @classmethod
    def from_dict(cls, data: Any, path: str = "conditions") -> Conditions:
        obj = _object(data, path, _CONDITION_KEYS)
        window = obj.get("timeWindow")
        return cls(
            device_trust=_enum(
                DeviceTrustRequirement, obj.get("deviceTrust", "ANY"), _at(path, "deviceTrust")
            ),
            certificate=CertificateConditions.from_dict(
                obj.get("certificate", {}), _at(path, "certificate")
            ),
            device_status=_list(
                obj.get("deviceStatus", []),
                _at(path, "deviceStatus"),
                _enum_value(DEVICE_STATUSES),
            ),
            users=UserConditions.from_dict(obj.get("users", {}), _at(path, "users")),
            groups=GroupConditions.from_dict(obj.get("groups", {}), _at(path, "groups")),
            network=NetworkConditions.from_dict(obj.get("network", {}), _at(path, "network")),
            time_window=None
            if window is None
            else TimeWindow.from_dict(window, _at(path, "timeWindow")),
        )


_NO_CONDITIONS = Conditions()


# --- rules, policies, zones ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: when all its conditions hold, its action decides. The catch-all rule is the
    policy's last, has no conditions, and can change its action only."""

    id: str
    name: str
    action: Action
    conditions: Conditions = field(default_factory=Conditions)
    catch_all: bool = False

    def to_dict(self, priority: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if priority is not None:
            out["priority"] = priority
        out["action"] = self.action.value
        out["conditions"] = self.conditions.to_dict()
        out["catchAll"] = self.catch_all
        return out

    @classmethod
    def from_dict(cls, data: Any, path: str = "rule") -> Rule:
        keys = ("id", "name", "priority", "action", "conditions", "catchAll")
        obj = _object(data, path, keys)
        for key in ("id", "name", "action"):
            if key not in obj:
                raise invalid(_at(path, key), "is required")
        priority = obj.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise invalid(_at(path, "priority"), "must be a whole number")
        rule = cls(
            id=_prefixed(RULE_PREFIX, "rule")(obj["id"], _at(path, "id")),
            name=_string(obj["name"], _at(path, "name")),
            action=_enum(Action, obj["action"], _at(path, "action")),
            conditions=Conditions.from_dict(obj.get("conditions", {}), _at(path, "conditions")),
            catch_all=_bool(obj.get("catchAll", False), _at(path, "catchAll")),
        )
        if rule.catch_all and not rule.conditions.empty:
            raise invalid(_at(path, "conditions"), "the catch-all rule has no conditions")
        return rule


@dataclass(frozen=True, slots=True)
class Policy:
    """A sign-on policy: rules in priority order (index 0 = priority 1), the catch-all last."""

    id: str
    name: str
    description: str | None
    rules: tuple[Rule, ...]
    app_ids: tuple[str, ...] = ()
    is_default: bool = False
    revision: int = 1

    @property
    def catch_all(self) -> Rule:
        return self.rules[-1]

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with that id, or None."""
        return next((r for r in self.rules if r.id == rule_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "isDefault": self.is_default,
            "appIds": list(self.app_ids),
            "revision": self.revision,
            "rules": [r.to_dict(i + 1) for i, r in enumerate(self.rules)],
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Policy:
        keys = ("id", "name", "description", "isDefault", "appIds", "revision", "rules")
        obj = _object(data, path, keys)
        for key in ("id", "name", "rules"):
            if key not in obj:
                raise invalid(_at(path, key), "is required")
        description = obj.get("description")
        if description is not None:
            description = _string(
                description, _at(path, "description"), max_length=MAX_DESCRIPTION_LENGTH
            )
        return cls(
            id=_prefixed(POLICY_PREFIX, "policy")(obj["id"], _at(path, "id")),
            name=_string(obj["name"], _at(path, "name")),
            description=description,
            rules=_rules(obj["rules"], _at(path, "rules")),
            app_ids=_list(obj.get("appIds", []), _at(path, "appIds"), _string),
            is_default=_bool(obj.get("isDefault", False), _at(path, "isDefault")),
            revision=_revision(obj.get("revision", 1), _at(path, "revision")),
        )


def _revision(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(path, "must be a whole number >= 0")
    return value


def _rules(value: Any, path: str) -> tuple[Rule, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise invalid(path, "must be a non-empty list ending with the catch-all rule")
    if len(value) > MAX_RULES:
        raise invalid(path, f"at most {MAX_RULES} rules")
    rules = tuple(Rule.from_dict(item, _at(path, i)) for i, item in enumerate(value))
    check_rules(rules, path)
    return rules


def check_rules(rules: tuple[Rule, ...], path: str = "rules") -> None:
    """POLICY_INVALID unless exactly the last rule is the catch-all and ids are unique."""
    if not rules or not rules[-1].catch_all:
        raise invalid(_at(path, len(rules) - 1), "the last rule must be the catch-all")
    for i, rule in enumerate(rules):
        if rule.catch_all and i != len(rules) - 1:
            raise invalid(_at(_at(path, i), "catchAll"), "only the last rule is the catch-all")
        if any(r.id == rule.id for r in rules[:i]):
            raise invalid(_at(_at(path, i), "id"), f"{rule.id!r} is used by an earlier rule")
    if not rules[-1].conditions.empty:
        raise invalid(_at(_at(path, len(rules) - 1), "conditions"), "the catch-all has none")


@dataclass(frozen=True, slots=True)
class Zone:
    """A network zone: IPv4 and IPv6 networks, each stored as its network (strict=False)."""

    id: str
    name: str
    cidrs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "cidrs": list(self.cidrs)}

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Zone:
        obj = _object(data, path, ("id", "name", "cidrs"))
        for key in ("id", "name", "cidrs"):
            if key not in obj:
                raise invalid(_at(path, key), "is required")
        cidrs = obj["cidrs"]
        if isinstance(cidrs, list) and len(cidrs) > MAX_CIDRS:
            raise invalid(_at(path, "cidrs"), f"at most {MAX_CIDRS} networks")
        return cls(
            id=_prefixed(ZONE_PREFIX, "zone")(obj["id"], _at(path, "id")),
            name=_string(obj["name"], _at(path, "name")),
            cidrs=_list(cidrs, _at(path, "cidrs"), _cidr),
        )
