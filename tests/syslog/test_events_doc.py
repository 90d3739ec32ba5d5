"""docs/events.md lists every event type: its headings must match EventType exactly.

Each type is a section ``### `event.type` `` under ``## Event types``, with the bullets
When, Severity and Outcome. The page's example is a ``device.trust.verify`` failure whose
shape must be the one ``Event.to_dict`` builds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from certbound.errors import ReasonCode
from certbound.pki import devpki, events
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.certificate import der
from certbound.pki.validation import Validator
from certbound.syslog.events import Event, EventType, Severity

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
_TYPE_HEADING = re.compile(r"^### `([a-z][a-z0-9_.]*)`\s*$")
_LABELS = ("When", "Severity", "Outcome")


def sections(text: str) -> dict[str, list[str]]:
    """Each ``### `type` `` section of ``## Event types``: its heading name -> its lines.
    A name listed twice raises (a page listing one type twice is wrong)."""
    out: dict[str, list[str]] = {}
    names: list[str] = []
    current: str | None = None
    inside = False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Event types"
            current = None
            continue
        match = _TYPE_HEADING.match(line)
        if inside and match:
            current = match.group(1)
            names.append(current)
            out[current] = []
        elif line.startswith("### "):
            current = None
        elif current is not None:
            out[current].append(line)
    twice = [name for name, count in Counter(names).items() if count > 1]
    assert not twice, f"listed more than once: {twice}"
    return out


def example(text: str) -> dict[str, Any]:
    """The JSON block of the ``## Example`` section."""
    part = text.split("## Example", 1)[1]
    block = part.split("```json", 1)[1].split("```", 1)[0]
    data: dict[str, Any] = json.loads(block)
    return data


def shape(value: Any) -> Any:
    """The keys of nested objects (lists: the shape of their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_event_type_documented_exactly(doc: str) -> None:
    assert set(sections(doc)) == {event_type.value for event_type in EventType}


def test_each_section_says_when_severity_and_outcome(doc: str) -> None:
    for name, lines in sections(doc).items():
        body = "\n".join(lines)
        for label in _LABELS:
            assert f"- **{label}**:" in body, f"{name}: no {label}"
        severity_line = next(line for line in lines if line.startswith("- **Severity**"))
        named = set(re.findall(r"`([A-Z]+)`", severity_line))
        assert named and named <= {s.value for s in Severity}, name


def test_prose_names_only_real_reason_codes(doc: str) -> None:
    named = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", doc))
    assert named - {code.value for code in ReasonCode} == set()


def foreign_device_event() -> Event:
    """The example's event as the code builds it: the quickstart's foreign device verified
    against a store holding only the quickstart chain."""
    pki = devpki.build_dev_pki()
    anchors = TrustAnchors.from_bundles([[pki.intermediate.cert, pki.root.cert]], 3)
    leaf = pki.devices["foreign"].cert
    result = Validator(StaticAnchors(anchors)).verify([der(leaf)])
    extra = {"command": "verify", "file": "pki/devices/foreign.pem"}
    event = events.device_verified(result, leaf, generation=3, extra=extra)
    return dataclasses.replace(event, published=dt.datetime.now(dt.UTC))


def test_example_is_a_verify_failure_in_the_event_shape(doc: str) -> None:
    data = example(doc)
    assert data["eventType"] == EventType.DEVICE_TRUST_VERIFY.value
    assert data["outcome"]["result"] == "FAILURE"
    assert data["outcome"]["reason"] == data["deviceTrust"]["reason"] == "UNKNOWN_CA"
    assert shape(data) == shape(foreign_device_event().to_dict())


def test_the_checks_can_fail(doc: str) -> None:
    """A page missing a type, or listing an unknown one, is caught."""
    missing = doc.replace("### `pki.ca.expiration.warn`", "### something else")
    assert EventType.PKI_CA_EXPIRATION_WARN.value not in sections(missing)
    extra = doc.replace("## Event types\n", "## Event types\n\n### `device.trust.invented`\n")
    assert set(sections(extra)) != {event_type.value for event_type in EventType}
    doubled = doc.replace("## Event types\n", "## Event types\n\n### `device.trust.verify`\n")
    with pytest.raises(AssertionError, match="more than once"):
        sections(doubled)
