"""The System Log event: its types and its Okta-shaped JSON form (DESIGN.md, "System Log event").

Every security decision is one :class:`Event`. Layers build events with the dataclasses here
and hand them to the recorder; nothing else defines event JSON. ``docs/events.md`` lists every
:class:`EventType` (a test keeps the two in step).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from certbound.clock import format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.randomness import time_ordered_uuid

EVENT_VERSION = "0"


class EventType(enum.StrEnum):
    DEVICE_TRUST_VERIFY = "device.trust.verify"
    SECURITY_TRUST_CA_ADD = "security.trust.ca.add"
    SECURITY_TRUST_CA_REMOVE = "security.trust.ca.remove"
    PKI_CA_EXPIRATION_WARN = "pki.ca.expiration.warn"
    SYSTEM_API_TOKEN_CREATE = "system.api_token.create"
    SYSTEM_API_TOKEN_REVOKE = "system.api_token.revoke"
    SYSTEM_LOG_PURGE = "system.log.purge"
    SECURITY_TRUST_CA_UPDATE = "security.trust.ca.update"
    PKI_CRL_DOWNLOAD_FAILURE = "pki.crl.download_failure"
    PKI_CRL_STALE = "pki.crl.stale"
    PKI_OCSP_FAILURE = "pki.ocsp.failure"
    DEVICE_LIFECYCLE_SUSPEND = "device.lifecycle.suspend"
    DEVICE_LIFECYCLE_UNSUSPEND = "device.lifecycle.unsuspend"
    DEVICE_LIFECYCLE_DEACTIVATE = "device.lifecycle.deactivate"
    USER_LIFECYCLE_CREATE = "user.lifecycle.create"
    USER_LIFECYCLE_UPDATE = "user.lifecycle.update"
    USER_LIFECYCLE_SUSPEND = "user.lifecycle.suspend"
    USER_LIFECYCLE_ACTIVATE = "user.lifecycle.activate"
    USER_LIFECYCLE_DELETE = "user.lifecycle.delete"
    USER_ACCOUNT_UPDATE_PASSWORD = "user.account.update_password"
    GROUP_LIFECYCLE_CREATE = "group.lifecycle.create"
    GROUP_LIFECYCLE_DELETE = "group.lifecycle.delete"
    GROUP_USER_MEMBERSHIP_ADD = "group.user_membership.add"
    GROUP_USER_MEMBERSHIP_REMOVE = "group.user_membership.remove"
    APPLICATION_LIFECYCLE_CREATE = "application.lifecycle.create"
    APPLICATION_LIFECYCLE_UPDATE = "application.lifecycle.update"
    APPLICATION_LIFECYCLE_DELETE = "application.lifecycle.delete"
    APPLICATION_CLIENT_SECRET_ROTATE = "application.client.secret_rotate"
    APP_OAUTH2_TOKEN_GRANT = "app.oauth2.token.grant"
    APP_OAUTH2_TOKEN_REVOKE = "app.oauth2.token.revoke"
    SECURITY_SIGNING_KEY_ROTATE = "security.signing_key.rotate"
    SECURITY_SIGNING_KEY_RETIRE = "security.signing_key.retire"
    USER_AUTHENTICATION_VERIFY = "user.authentication.verify"
    POLICY_EVALUATE_SIGN_ON = "policy.evaluate_sign_on"
    POLICY_LIFECYCLE_CREATE = "policy.lifecycle.create"
    POLICY_LIFECYCLE_UPDATE = "policy.lifecycle.update"
    POLICY_LIFECYCLE_DELETE = "policy.lifecycle.delete"
    POLICY_RULE_CREATE = "policy.rule.create"
    POLICY_RULE_UPDATE = "policy.rule.update"
    POLICY_RULE_DELETE = "policy.rule.delete"
    POLICY_RULE_REORDER = "policy.rule.reorder"
    ZONE_LIFECYCLE_CREATE = "zone.lifecycle.create"
    ZONE_LIFECYCLE_UPDATE = "zone.lifecycle.update"
    ZONE_LIFECYCLE_DELETE = "zone.lifecycle.delete"
    ADMIN_ACCESS_DENY = "admin.access.deny"
    ADMIN_ACCOUNT_CREATE = "admin.account.create"
    ADMIN_ACCOUNT_UPDATE = "admin.account.update"
    ADMIN_ACCOUNT_DEACTIVATE = "admin.account.deactivate"


class Severity(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Result(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    ALLOW = "ALLOW"
    DENY = "DENY"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class _Principal:
    """Okta's shape for whoever acts and whatever is acted on."""

    id: str
    type: str
    alternate_id: str | None = None
    display_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "alternateId": self.alternate_id,
            "displayName": self.display_name,
        }


class Actor(_Principal):
    """Who acted."""

    __slots__ = ()


class Target(_Principal):
    """What was acted on."""

    __slots__ = ()


# Who acts when a person runs the CLI on the server itself.
SYSTEM_ACTOR = Actor("system", "SystemPrincipal", "certbound", "Certbound")
CLI_ACTOR = Actor("cli", "SystemPrincipal", "certbound-cli", "Certbound CLI")


@dataclass(frozen=True, slots=True)
class Client:
    ip_address: str | None = None
    user_agent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ipAddress": self.ip_address, "userAgent": {"rawUserAgent": self.user_agent}}


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    reason: ReasonCode | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result.value, "reason": self.reason.value if self.reason else None}


@dataclass(frozen=True, slots=True)
class Event:
    """One System Log event. ``device_trust`` and ``policy_evaluation`` hold the JSON objects
    of DESIGN.md's ``deviceTrust`` and ``policyEvaluationDetail`` as built by their layers."""

    event_type: EventType
    display_message: str
    outcome: Outcome
    actor: Actor = SYSTEM_ACTOR
    severity: Severity = Severity.INFO
    targets: tuple[Target, ...] = ()
    client: Client = field(default_factory=Client)
    transaction_id: str | None = None
    transaction_type: str = "CLI"
    authentication_context: dict[str, Any] | None = None
    device_trust: dict[str, Any] | None = None
    policy_evaluation: dict[str, Any] | None = None
    debug_data: dict[str, Any] = field(default_factory=dict)
    uuid: str = field(default_factory=time_ordered_uuid)
    published: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event's JSON object; ``published`` must be set (the recorder sets it)."""
        assert self.published is not None, "an event is published by the recorder"
        return {
            "uuid": self.uuid,
            "published": format_rfc3339(self.published),
            "eventType": self.event_type.value,
            "version": EVENT_VERSION,
            "severity": self.severity.value,
            "displayMessage": self.display_message,
            "actor": self.actor.to_dict(),
            "client": self.client.to_dict(),
            "outcome": self.outcome.to_dict(),
            "target": [t.to_dict() for t in self.targets],
            "transaction": {"id": self.transaction_id or self.uuid, "type": self.transaction_type},
            "authenticationContext": self.authentication_context,
            "deviceTrust": self.device_trust,
            "policyEvaluationDetail": self.policy_evaluation,
            "debugContext": {"debugData": self.debug_data},
        }


def refused_change(
    event_type: EventType,
    what: str,
    target_type: str,
    ref: str,
    error: CertboundError,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """A change an admin asked for and a library refused (``what``: the change, in words):
    the target is the reference as given; ``debugData`` has ``ref``, the ``detail`` and the
    error's context (never a password or secret: errors carry none)."""
    return Event(
        event_type=event_type,
        display_message=f"{what}: refused ({error.reason.value}): {ref}",
        outcome=Outcome(Result.FAILURE, error.reason),
        actor=actor,
        severity=Severity.WARN,
        targets=(Target(ref, target_type, None, None),),
        client=client or Client(),
        debug_data={"ref": ref, "detail": error.detail, "context": error.context},
    )
