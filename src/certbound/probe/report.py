"""What ``certbound handshake`` found: one result per layer, in order, and where to look next.

A :class:`HandshakeReport` holds the four layers a client's request passes on its way to
Certbound's verdict (``tcp``, ``tls``, ``client-certificate``, ``certbound``), each PASS,
FAIL or SKIPPED with a detail, the reason code when one applies (its Certbound layer and
fix), and the facts the layer saw. The run passed only when every layer passed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certbound.errors import ReasonCode


class Status(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"


class LayerName(enum.StrEnum):
    """The layers a handshake check reports, in the order they are checked."""

    TCP = "tcp"
    TLS = "tls"
    CLIENT_CERTIFICATE = "client-certificate"
    CERTBOUND = "certbound"


def known_code(value: object) -> ReasonCode | None:
    """The catalogue's code for a wire name, or None (absent, or newer than this client)."""
    if not isinstance(value, str):
        return None
    try:
        return ReasonCode(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class LayerResult:
    """One layer's outcome. ``reason`` is a reason code's wire name: usually one of ours, but
    the server may answer with a code newer than this client, which is shown as it came."""

    name: LayerName
    status: Status
    detail: str
    reason: str | None = None
    layer: str | None = None
    fix: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, name: LayerName, detail: str, facts: Mapping[str, Any]) -> LayerResult:
        return cls(name, Status.PASS, detail, facts=facts)

    @classmethod
    def failed(
        cls,
        name: LayerName,
        detail: str,
        reason: ReasonCode | None,
        facts: Mapping[str, Any] | None = None,
    ) -> LayerResult:
        """A failure; a reason code brings its Certbound layer and fix from the catalogue."""
        return cls(
            name,
            Status.FAIL,
            detail,
            reason=reason.value if reason else None,
            layer=reason.layer.value if reason else None,
            fix=reason.fix if reason else None,
            facts=facts or {},
        )

    @classmethod
    def skipped(cls, name: LayerName, why: str) -> LayerResult:
        return cls(name, Status.SKIPPED, why)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name.value,
            "status": self.status.value,
            "detail": self.detail,
            "reason": self.reason,
            "layer": self.layer,
            "fix": self.fix,
            "facts": dict(self.facts),
        }


@dataclass(frozen=True, slots=True)
class HandshakeReport:
    """Every layer in order, and the next steps (commands to run, the fix to apply)."""

    url: str
    layers: tuple[LayerResult, ...]
    next_steps: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(layer.status is Status.PASS for layer in self.layers)

    @property
    def first_failure(self) -> LayerResult | None:
        return next((layer for layer in self.layers if layer.status is Status.FAIL), None)

    def layer(self, name: LayerName) -> LayerResult:
        return next(layer for layer in self.layers if layer.name is name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "layers": [layer.to_dict() for layer in self.layers],
            "next": list(self.next_steps),
        }
