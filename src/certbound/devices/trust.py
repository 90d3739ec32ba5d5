"""The device-trust decision for one request: intake, validation, revocation, device status.

:class:`DeviceTrust` takes what intake found (:class:`~certbound.intake.chain.Presented`)
and answers whether the request comes from a trusted device, and why not:

1. intake's own refusal (``UNTRUSTED_PROXY_HEADER``, ``PROXY_HEADER_MALFORMED``), or no
   certificate at all (``NO_CLIENT_CERTIFICATE``);
2. the chain, validated against the trust store with revocation
   (:class:`~certbound.pki.validation.Validator`);
3. the device the certificate maps to (:class:`~certbound.devices.registry.DeviceRegistry`):
   a suspended or deactivated device is refused (``DEVICE_SUSPENDED``,
   ``DEVICE_DEACTIVATED``).

Every evaluation is one ``device.trust.verify`` event carrying the full ``deviceTrust``
context (certificate, revocation, ``intake``, ``device``). The same judgement serves the TLS
listener's reject mode (:meth:`DeviceTrust.judge`), whose refusals are logged by
:meth:`DeviceTrust.record_rejection`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from certbound.devices.registry import Device, DeviceRegistry, DeviceStatus
from certbound.errors import ReasonCode
from certbound.intake.chain import IntakePath, Presented
from certbound.intake.tls import HandshakeRejection
from certbound.pki import events
from certbound.pki.certificate import UNDECODABLE, CertificateInfo
from certbound.pki.validation import Rejected, ValidationResult, Validator, Verified
from certbound.syslog.events import Actor, Client, Event
from certbound.syslog.recorder import EventRecorder

DEVICE_ACTOR_TYPE = "Device"
ANONYMOUS = Actor("anonymous", DEVICE_ACTOR_TYPE, None, "Unidentified client")
_STATUS_REFUSALS = {
    DeviceStatus.SUSPENDED: ReasonCode.DEVICE_SUSPENDED,
    DeviceStatus.DEACTIVATED: ReasonCode.DEVICE_DEACTIVATED,
}


@dataclass(frozen=True, slots=True)
class TrustDecision:
    """The verdict on one request's device, and the event that recorded it (``event_id``
    None when the caller records the decision in its own event)."""

    presented: Presented
    result: ValidationResult | None
    reason: ReasonCode | None
    detail: str | None
    device: Device | None
    event_id: str | None
    device_trust: dict[str, Any] | None = None  # the event's deviceTrust object

    @property
    def verified(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /api/v1/intake/echo`` answers."""
        reason = self.reason
        return {
            "intake": self.presented.to_dict(),
            "chain": [_describe(der) for der in self.presented.certificates],
            "verified": self.verified,
            "verdict": "ALLOW" if self.verified else "DENY",
            "reason": reason.value if reason else None,
            "layer": reason.layer.value if reason else None,
            "detail": self.detail,
            "fix": reason.fix if reason else None,
            "device": self.device.to_dict() if self.device else None,
            "revocation": (
                self.result.revocation.to_dict()
                if self.result is not None and self.result.revocation is not None
                else None
            ),
            "eventId": self.event_id,
        }


# Devices present the same certificates on every request: parse and describe each once.
_CACHED_CERTIFICATES = 4096


def _describe(der: bytes) -> dict[str, Any]:
    return dict(_described(der))


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _described(der: bytes) -> dict[str, Any]:
    try:
        return events.certificate_facts(CertificateInfo.of(x509.load_der_x509_certificate(der)))
    except (ValueError, *UNDECODABLE) as exc:
        return {"error": f"not a decodable X.509 certificate ({type(exc).__name__})"}


def _leaf(certificates: tuple[bytes, ...]) -> x509.Certificate | None:
    return _parsed(certificates[0]) if certificates else None


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _parsed(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _actor(device: Device | None) -> Actor:
    if device is None:
        return ANONYMOUS
    return Actor(device.id, DEVICE_ACTOR_TYPE, device.subject_dn, device.user)


class DeviceTrust:
    """Decides and records device trust for requests, over one validator and registry."""

    def __init__(
        self, validator: Validator, registry: DeviceRegistry, recorder: EventRecorder
    ) -> None:
        self.validator = validator
        self.registry = registry
        self._recorder = recorder

    def evaluate(
        self, presented: Presented, client: Client, *, offline: bool = False, record: bool = True
    ) -> TrustDecision:
        """Judge the request's chain and record the ``device.trust.verify`` event. With
        ``offline`` (on the event loop), only from cached answers: WouldBlockError, before
        anything is recorded, when the decision needs I/O or a cold validation. Without
        ``record`` the event is built but not recorded: the caller records the decision
        (``device_trust``) in the one event of its own action, such as a token grant."""
        result, refusal, device = self._judge(presented, offline)
        context = {"intake": presented.to_dict(), "device": device.to_dict() if device else None}
        leaf = _leaf(presented.certificates)
        refused = refusal if isinstance(result, Verified) else None
        event_id = None
        if record:
            event = events.device_verified(
                result, leaf, _actor(device), client, context=context, refusal=refused
            )
            self._record(event)
            event_id, device_trust = event.uuid, event.device_trust
        else:
            device_trust = events.device_trust_object(
                result, leaf, context=context, refusal=refused
            )
        reason, detail = refusal or (None, None)
        validated = result if presented.certificates and not presented.problem else None
        return TrustDecision(presented, validated, reason, detail, device, event_id, device_trust)

    def judge(self, chain: tuple[bytes, ...]) -> tuple[ReasonCode, str] | None:
        """The TLS listener's reject mode: None to accept ``chain``, else why not."""
        presented = Presented(IntakePath.TLS, chain, None, True)
        _, refusal, _ = self._judge(presented)
        return refusal

    def record_rejection(self, rejection: HandshakeRejection) -> None:
        """Log a chain the TLS listener refused inside the handshake."""
        result: ValidationResult = Rejected(rejection.reason, rejection.detail)
        presented = Presented(IntakePath.TLS, rejection.chain, rejection.peer, True)
        context = {"intake": {**presented.to_dict(), "rejectedInHandshake": True}, "device": None}
        host = rejection.peer.rsplit(":", 1)[0] if rejection.peer else None
        leaf = _leaf(rejection.chain)
        if leaf is not None:
            result = self.validator.verify(rejection.chain)
            if isinstance(result, Verified):  # refused for the device's status
                result = Rejected(rejection.reason, rejection.detail)
        event = events.device_verified(
            result, leaf, ANONYMOUS, Client(host), context=context, extra={"tlsAlert": True}
        )
        self._record(event)

    def _judge(
        self, presented: Presented, offline: bool = False
    ) -> tuple[ValidationResult, tuple[ReasonCode, str] | None, Device | None]:
        if presented.problem is not None:
            detail = presented.problem_detail or presented.problem.meaning
            return Rejected(presented.problem, detail), (presented.problem, detail), None
        if not presented.certificates:
            code = ReasonCode.NO_CLIENT_CERTIFICATE
            detail = "the client presented no certificate"
            return Rejected(code, detail), (code, detail), None
        result = self.validator.verify(presented.certificates, offline=offline)
        if isinstance(result, Rejected):
            return result, (result.reason, result.detail), None
        device = self.registry.observe(result.chain[0], presented.certificates[0], offline=offline)
        refused = _STATUS_REFUSALS.get(device.status)
        if refused is None:
            return result, None, device
        detail = f"device {device.id} ({device.subject_dn}) is {device.status.value.lower()}"
        return result, (refused, detail), device

    def _record(self, event: Event) -> None:
        self._recorder.record(event)
