"""Mapping an event to its ``log_events`` row: the canonical JSON body and the filterable columns.

The body is the event's JSON (:meth:`Event.to_dict`) in one canonical form (sorted keys, no
spaces), so its hash is reproducible. Every other column is *derived from the body* by
:func:`columns_of`; chain verification re-derives them to notice a column edited behind the
body's back. Column values are cut to the column's width (and NUL characters, which
PostgreSQL text refuses, replaced) so that no event can be refused by the database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import orjson

from certbound.clock import parse_rfc3339
from certbound.syslog.events import Event

# Widths of the String columns of LogEvent (storage/models.py); Text columns have none.
_WIDTH = {
    "uuid": 36,
    "event_type": 100,
    "severity": 8,
    "outcome_result": 16,
    "outcome_reason": 64,
    "actor_id": 255,
    "actor_alternate_id": 255,
    "client_ip": 64,
    "transaction_id": 64,
    "device_serial": 64,
    "device_thumbprint": 64,
}

_UNLIMITED = 1 << 62
_EMPTY: Mapping[str, Any] = {}

# The columns derived from the body, in table order (seq, prev_hash and hash come from the chain).
DERIVED_COLUMNS = (
    "uuid",
    "published",
    "event_type",
    "severity",
    "outcome_result",
    "outcome_reason",
    "actor_id",
    "actor_alternate_id",
    "client_ip",
    "transaction_id",
    "device_serial",
    "device_subject_dn",
    "device_issuer_dn",
    "device_thumbprint",
    "target_ids",
    "display_message",
)


def canonical_json(data: Mapping[str, Any]) -> str:
    """The one serialisation of an event's JSON that is stored and hashed (ASCII only:
    everything else is escaped, so the hash never depends on a text encoding).

    orjson writes the same text as ``json.dumps(sort_keys=True, separators=(",", ":"))``
    for ASCII data, about ten times faster; anything else goes to the standard library.
    """
    try:
        body: str = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        body = ""
    if body and body.isascii():
        return body
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    width = _WIDTH.get(column, _UNLIMITED)
    if type(value) is str and len(value) <= width and value.isascii() and "\x00" not in value:
        return value  # the common case, checked cheaply
    text = str(value)
    if not text.isascii():  # lone surrogates cannot be encoded for the database
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")[:width]


def _target_ids(targets: Any) -> str | None:
    """`` id1 id2 ``: space-delimited with a space at each end, so ``LIKE '% id %'`` matches
    one whole id; None when the event names no target."""
    ids = [str(t["id"]) for t in targets or () if isinstance(t, Mapping) and t.get("id")]
    if not ids:
        return None
    return _text(" " + " ".join(i.replace(" ", "_") for i in ids) + " ", "target_ids")


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if type(value) is dict or isinstance(value, Mapping):  # the exact-type test is the cheap one
        return value
    return _EMPTY


def columns_of(data: Mapping[str, Any], published: dt.datetime | None = None) -> dict[str, Any]:
    """The filterable column values of an event, from its JSON object (``published``: its
    time, when the caller has it, instead of parsing it back)."""
    actor = _object(data, "actor")
    outcome = _object(data, "outcome")
    certificate = _object(_object(data, "deviceTrust"), "certificate")
    raw = {
        "uuid": data["uuid"],
        "event_type": data["eventType"],
        "severity": data["severity"],
        "outcome_result": outcome.get("result"),
        "outcome_reason": outcome.get("reason"),
        "actor_id": actor.get("id"),
        "actor_alternate_id": actor.get("alternateId"),
        "client_ip": _object(data, "client").get("ipAddress"),
        "transaction_id": _object(data, "transaction").get("id"),
        "device_serial": certificate.get("serialNumber"),
        "device_subject_dn": certificate.get("subjectDn"),
        "device_issuer_dn": certificate.get("issuerDn"),
        "device_thumbprint": certificate.get("sha256Thumbprint"),
        "display_message": data.get("displayMessage") or "",
    }
    row: dict[str, Any] = {name: _text(value, name) for name, value in raw.items()}
    row["published"] = published or parse_rfc3339(data["published"])
    row["target_ids"] = _target_ids(data.get("target"))
    return row


def body_row(body: str) -> dict[str, Any]:
    """The row of an event stored (or spooled) as its canonical JSON body."""
    row = columns_of(json.loads(body))
    row["body"] = body
    return row


def event_row(event: Event) -> dict[str, Any]:
    """The ``log_events`` values of a published event, except seq, prev_hash and hash."""
    data = event.to_dict()
    try:
        body = canonical_json(data)
    except TypeError:  # a value JSON has no form for (a datetime, bytes...): kept as its str()
        return body_row(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str))
    row = columns_of(data, event.published)
    row["body"] = body
    return row
