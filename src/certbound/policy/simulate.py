"""Sign-on requests as the live paths build them, and their simulation without side effects.

:class:`SignOn` turns what a request brought (the app, the user and their groups, the
device-trust verdict as a :class:`DeviceContext`, the client IP, the time) into a
:class:`~certbound.policy.request.SignOnRequest` and evaluates the app's compiled policy
(:class:`~certbound.policy.store.CompiledPolicies`). The token endpoint, the login page and
simulation all go through it, so a simulated request is decided exactly as a live one. The
certificate's facts carry the trust-store ids of the CAs on the validated path, read from
the validator's trust anchors and kept per leaf and trust-store generation: a device seen
again costs two dictionary look-ups, and with ``offline`` nothing reads the database.

:class:`Simulator` answers "what would the policy decide for this app, user, certificate,
address and time?" (``certbound policy simulate``, ``POST /api/v1/policies/simulate``): the
certificate is validated by the real validator at that time, the device's status is read
from the registry without registering it (a device never seen would be registered ACTIVE),
and nothing is recorded. A draft policy (its JSON) may be evaluated instead of the app's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import and_, or_, select

from certbound.clock import Clock, as_utc
from certbound.devices.registry import DeviceStatus, issuer_key
from certbound.devices.trust import TrustDecision
from certbound.directory.apps import Apps
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.errors import ReasonCode
from certbound.pki.anchors import TrustAnchors
from certbound.pki.certificate import der, serial_hex
from certbound.pki.pem import load_presented_file
from certbound.pki.validation import Rejected, Validator, Verified
from certbound.policy.engine import CompiledPolicy, PolicyDecision, compile_policy
from certbound.policy.model import Policy, invalid
from certbound.policy.request import CertificateFacts, SignOnRequest, parse_ip
from certbound.policy.store import CompiledPolicies
from certbound.storage.database import Database
from certbound.storage.models import Device as DeviceRow

_MAX_FACTS = 10_000
_REFUSED_STATUSES = {
    DeviceStatus.SUSPENDED.value: ReasonCode.DEVICE_SUSPENDED,
    DeviceStatus.DEACTIVATED.value: ReasonCode.DEVICE_DEACTIVATED,
}


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What sign-on policies read of a request's device: whether it is verified (chain,
    revocation and device status all passed), else the reason code; the device's status;
    the validated path (leaf first) when the chain validated, and the leaf's DER."""

    verified: bool
    reason: str | None
    status: str | None
    chain: tuple[x509.Certificate, ...] | None
    leaf_der: bytes | None

    @classmethod
    def of(cls, decision: TrustDecision | None) -> DeviceContext:
        """The context of a live request's device-trust decision (None: no certificate)."""
        if decision is None:
            return NO_DEVICE
        result = decision.result
        certificates = decision.presented.certificates
        return cls(
            decision.verified,
            decision.reason.value if decision.reason is not None else None,
            decision.device.status.value if decision.device is not None else None,
            result.chain if isinstance(result, Verified) else None,
            certificates[0] if certificates else None,
        )


NO_DEVICE = DeviceContext(False, ReasonCode.NO_CLIENT_CERTIFICATE.value, None, None, None)


class SignOn:
    """Evaluates the sign-on policy of an app for one request (live or simulated)."""

    def __init__(
        self,
        policies: CompiledPolicies,
        anchors: Callable[..., TrustAnchors],
        groups: Callable[[str], frozenset[str]] | None = None,
    ) -> None:
        """``anchors``: the validator's ``anchors(offline=...)``; ``groups``: a user's
        group ids (``Groups.group_ids_of``), for the grants made for a user."""
        self.policies = policies
        self._anchors = anchors
        self._groups = groups
        self._facts: dict[bytes, tuple[int, tuple[x509.Certificate, ...], CertificateFacts]] = {}
        self._lock = threading.Lock()

    def group_ids(self, user_id: str) -> frozenset[str]:
        """The user's group ids (reads the database)."""
        return self._groups(user_id) if self._groups is not None else frozenset()

    def certificate(
        self, device: DeviceContext, *, offline: bool = False
    ) -> CertificateFacts | None:
        """The facts of the device's validated path, with the trust-store ids of its CAs."""
        chain = device.chain
        if chain is None:
            return None
        anchors = self._anchors(offline=offline)
        key = device.leaf_der if device.leaf_der is not None else der(chain[0])
        hit = self._facts.get(key)
        if (
            hit is not None
            and hit[0] == anchors.generation
            and (hit[1] is chain or hit[1] == chain)
        ):
            return hit[2]
        ca_ids = frozenset(owner for cert in chain[1:] if (owner := anchors.owner(cert)))
        facts = CertificateFacts.of(chain, ca_ids)
        with self._lock:
            if len(self._facts) >= _MAX_FACTS:
                self._facts.clear()
            self._facts[key] = (anchors.generation, chain, facts)
        return facts

    def request(
        self,
        app_id: str | None,
        device: DeviceContext,
        *,
        at: dt.datetime,
        ip: str | None = None,
        user_id: str | None = None,
        group_ids: frozenset[str] = frozenset(),
        offline: bool = False,
    ) -> SignOnRequest:
        return SignOnRequest(
            app_id=app_id,
            user_id=user_id,
            group_ids=group_ids,
            ip=_address(ip),
            at=at,
            device_verified=device.verified,
            device_reason=None if device.verified else device.reason,
            device_status=device.status,
            certificate=self.certificate(device, offline=offline),
        )

    def evaluate(
        self,
        app_id: str | None,
        device: DeviceContext,
        *,
        at: dt.datetime,
        ip: str | None = None,
        user_id: str | None = None,
        group_ids: frozenset[str] = frozenset(),
        offline: bool = False,
        policy: CompiledPolicy | None = None,
    ) -> PolicyDecision:
        """The decision of the app's policy (or ``policy``, a draft). With ``offline``
        (on the event loop): WouldBlockError when that needs the database."""
        compiled = policy or self.policies.for_app(app_id, offline=offline)
        asked = self.request(
            app_id, device, at=at, ip=ip, user_id=user_id, group_ids=group_ids, offline=offline
        )
        return compiled.evaluate(asked)


def _address(ip: str | None) -> Any:
    if not ip:
        return None
    try:
        return parse_ip(ip)
    except ValueError:
        return None  # not an address (a Unix socket peer): no network condition holds


# --- simulation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulation:
    """A simulated sign-on: the decision and what device trust said."""

    decision: PolicyDecision
    device_trust: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        reason = self.decision.reason
        return {
            "decision": self.decision.decision.value,
            "reason": None if reason is None else reason.value,
            "policyEvaluationDetail": self.decision.to_dict(),
            "deviceTrust": self.device_trust,
        }


def _stored_device(db: Database, leaf: x509.Certificate, leaf_der: bytes) -> DeviceRow | None:
    """The registry's device for a leaf, as ``DeviceRegistry.observe`` would find it (by
    thumbprint, else by issuer and serial number), read without registering anything."""
    thumbprint = hashlib.sha256(leaf_der).hexdigest()
    query = select(DeviceRow).where(
        or_(
            DeviceRow.thumbprint == thumbprint,
            and_(
                DeviceRow.issuer_sha256 == issuer_key(leaf.issuer.rfc4514_string()),
                DeviceRow.serial_number == serial_hex(leaf),
            ),
        )
    )
    with db.session() as session:
        return session.scalars(query).first()


def _device_json(row: DeviceRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"id": row.id, "status": row.status, "user": row.user_name, "subjectDn": row.subject_dn}


class Simulator:
    """Simulates sign-ons over the real validator and the device registry's records."""

    def __init__(
        self, db: Database, clock: Clock, validator: Validator, policies: CompiledPolicies
    ) -> None:
        self._db = db
        self._clock = clock
        self._validator = validator
        groups = Groups(db, clock)
        self.sign_on = SignOn(policies, validator.anchors, groups.group_ids_of)
        self._apps, self._users = Apps(db, clock), Users(db, clock)

    def device(
        self, presented: Sequence[bytes] | None, at: dt.datetime
    ) -> tuple[DeviceContext, dict[str, Any]]:
        """What device trust would say of the chain at ``at``, without registering it."""
        if not presented:
            reason = ReasonCode.NO_CLIENT_CERTIFICATE
            about = {"verified": False, "reason": reason.value, "detail": "no certificate"}
            return NO_DEVICE, {**about, "device": None, "newDevice": False}
        result = self._validator.verify(presented, at)
        if isinstance(result, Rejected):
            context = DeviceContext(False, result.reason.value, None, None, presented[0])
            about = {"verified": False, "reason": result.reason.value, "detail": result.detail}
            return context, {**about, "device": None, "newDevice": False}
        row = _stored_device(self._db, result.chain[0], presented[0])
        status = row.status if row is not None else DeviceStatus.ACTIVE.value
        refused = _REFUSED_STATUSES.get(status)
        detail = f"device {row.id} is {status.lower()}" if refused and row else None
        context = DeviceContext(
            refused is None, refused.value if refused else None, status, result.chain, presented[0]
        )
        return context, {
            "verified": refused is None,
            "reason": refused.value if refused else None,
            "detail": detail,
            "device": _device_json(row),
            "newDevice": row is None,
            "certificate": result.identity.to_dict(),
        }

    def run(
        self,
        app: str,
        *,
        user: str | None = None,
        certificate: bytes | None = None,
        ip: str | None = None,
        at: dt.datetime | None = None,
        draft: Mapping[str, Any] | Policy | None = None,
    ) -> Simulation:
        """Simulate a sign-on to ``app`` (id or client_id) by ``user`` (id or username)
        presenting ``certificate`` (a PEM or DER chain, leaf first) from ``ip`` at ``at``
        (default now), under the app's policy or ``draft``. APP_NOT_FOUND, USER_NOT_FOUND,
        PEM_MALFORMED, POLICY_INVALID."""
        when = as_utc(at) if at is not None else self._clock.now()
        found = self._apps.get(app)
        user_id, group_ids = None, frozenset[str]()
        if user is not None:
            user_id = self._users.get(user).id
            group_ids = self.sign_on.group_ids(user_id)
        if ip is not None:
            ip = _checked_ip(ip)
        chain = [der(c) for c in load_presented_file(certificate)] if certificate else None
        device, about = self.device(chain, when)
        compiled = None
        if draft is not None:
            policy = draft if isinstance(draft, Policy) else Policy.from_dict(draft, "policy")
            compiled = compile_policy(policy, self.sign_on.policies.zones())
        decision = self.sign_on.evaluate(
            found.id, device, at=when, ip=ip, user_id=user_id, group_ids=group_ids,
            policy=compiled,
        )  # fmt: skip
        return Simulation(decision, about)


def _checked_ip(ip: str) -> str:
    try:
        return str(parse_ip(ip.strip()))
    except ValueError:
        raise invalid("ip", f"{ip!r} is not an IPv4 or IPv6 address") from None
