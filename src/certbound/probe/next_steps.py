"""Where to look next after a handshake check: the System Log entry that explains the server's
decision (``certbound diagnose``, ``certbound log --filter``) and the fix of every layer that
failed, from the reason-code catalogue (or the server, for a code it decided)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from certbound.pki.certificate import serial_hex

from .report import LayerName, LayerResult, Status

if TYPE_CHECKING:
    from .handshake import ProbeOptions

_ON_SERVER = "(on the server, with its --config)"


def next_steps(layers: Sequence[LayerResult], options: ProbeOptions) -> tuple[str, ...]:
    event_id = next(
        (layer.facts.get("eventId") for layer in layers if layer.name is LayerName.CERTBOUND),
        None,
    )
    failures = [layer for layer in layers if layer.status is Status.FAIL]
    if not failures:
        if event_id:
            return (f"certbound diagnose {event_id} {_ON_SERVER}: the decision as recorded",)
        return ()
    steps: list[str] = []
    for layer in failures:
        steps += _where_to_look(layer, options, event_id)
    steps += [f"fix ({layer.name.value}): {layer.fix}" for layer in failures if layer.fix]
    return tuple(dict.fromkeys(steps))


def _where_to_look(layer: LayerResult, options: ProbeOptions, event_id: object) -> list[str]:
    serial = serial_hex(options.credentials.leaf)
    by_serial = f'deviceTrust.certificate.serialNumber eq "{serial}"'
    target = options.target
    if layer.name is LayerName.TLS:
        sni = f" -servername {target.host}" if not target.is_ip else ""
        return [
            f"openssl s_client -connect {target.host}:{target.port}{sni} -showcerts: "
            "the certificates the server sends"
        ]
    if layer.name is LayerName.CLIENT_CERTIFICATE and layer.facts.get("alert"):
        return [
            f"certbound diagnose --serial {serial} {_ON_SERVER}",
            f"certbound log --filter '{by_serial}' {_ON_SERVER}",
        ]
    if layer.name is LayerName.CERTBOUND and event_id:
        return [f"certbound diagnose {event_id} {_ON_SERVER}"]
    if layer.name is LayerName.CERTBOUND and options.token and layer.facts.get("status") == 404:
        return ["run again without --token: the intake echo shows Certbound's verdict"]
    if layer.name is LayerName.CERTBOUND and options.token and layer.reason:
        grants = f'eventType eq "app.oauth2.token.grant" and {by_serial}'
        return [f"certbound log --filter '{grants}' {_ON_SERVER}"]
    return []
