"""Request bodies of the admin API: what each route accepts, read and checked strictly.

A route declares its body as a :class:`Body`: JSON object fields (:class:`Field`: kind,
required, nullable, limits), and for a PEM upload the PEM media types too. :func:`read`
refuses, with ``INVALID_REQUEST_BODY``:

- 413: a body larger than :data:`MAX_BODY_BYTES` (1 MiB), by ``Content-Length`` or as read;
- 415: a content type the route does not take (JSON routes: ``application/json``);
- 400: no body where one is required, a body where none is taken (but ``{}``), JSON that
  does not parse or is not an object, an unknown field (never ignored), a field of the
  wrong type or out of its limits, a missing required field, text holding a NUL character.

The same declarations give the OpenAPI request schemas (:mod:`certbound.web.api.openapi`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from certbound.errors import ReasonCode
from certbound.web.problem import ApiError

MAX_BODY_BYTES = 1024 * 1024
JSON = "application/json"
PEM_TYPES = ("text/plain", "application/x-pem-file")
_PYTHON_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


class Kind(enum.StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"


def invalid(detail: str, status: int = 400) -> ApiError:
    return ApiError(status, ReasonCode.INVALID_REQUEST_BODY, detail)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a JSON body; ``items``: the kind of an array's items."""

    name: str
    kind: Kind
    description: str = ""
    required: bool = False
    nullable: bool = False
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    items: Kind | None = None

    def schema(self) -> dict[str, Any]:
        kind = self.kind.value
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        limits = {
            "description": self.description or None,
            "enum": list(self.enum) or None,
            "maxLength": self.max_length,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "items": {"type": self.items.value} if self.items else None,
        }
        schema.update({key: value for key, value in limits.items() if value is not None})
        if self.enum and self.nullable:
            schema["enum"] = [*self.enum, None]
        return schema

    def check(self, value: Any) -> None:
        """ApiError 400 naming the field when ``value`` does not fit it."""
        if value is None:
            if not self.nullable:
                raise invalid(f"{self.name}: must not be null")
            return
        if not _is_kind(value, self.kind):
            raise invalid(f"{self.name}: must be {_article(self.kind)}")
        if self.items is not None and not all(_is_kind(item, self.items) for item in value):
            raise invalid(f"{self.name}: every item must be {_article(self.items)}")
        if self.enum and value not in self.enum:
            raise invalid(f"{self.name}: {value!r} is not one of {', '.join(self.enum)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise invalid(f"{self.name}: at most {self.max_length} characters")
        if self.minimum is not None and value < self.minimum:
            raise invalid(f"{self.name}: at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise invalid(f"{self.name}: at most {self.maximum}")


def _is_kind(value: Any, kind: Kind) -> bool:
    if kind in (Kind.INTEGER, Kind.NUMBER) and isinstance(value, bool):
        return False
    return isinstance(value, _PYTHON_TYPES[kind.value])


def _article(kind: Kind) -> str:
    return f"an {kind.value}" if kind in (Kind.INTEGER, Kind.OBJECT, Kind.ARRAY) else f"a {kind}"


@dataclass(frozen=True, slots=True)
class Body:
    """A route's body: a JSON object of ``fields``; with ``pem``, a PEM text too."""

    fields: tuple[Field, ...]
    pem: bool = False
    required: bool = True

    @property
    def media_types(self) -> tuple[str, ...]:
        return (JSON, *PEM_TYPES) if self.pem else (JSON,)

    def schema(self) -> dict[str, Any]:
        required = [f.name for f in self.fields if f.required]
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: f.schema() for f in self.fields},
        }
        if required:
            schema["required"] = required
        return schema

    def parse(self, data: bytes) -> dict[str, Any]:
        """The JSON object ``data`` holds, every field checked."""
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise invalid(f"the body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise invalid("the body must be a JSON object")
        known = {f.name: f for f in self.fields}
        for name in value:
            if name not in known:
                names = ", ".join(known) or "none"
                raise invalid(f"{name}: unknown field; the fields are {names}")
        for field in self.fields:
            if field.name in value:
                field.check(value[field.name])
            elif field.required:
                raise invalid(f"{field.name}: is required")
        _refuse_nul(value, "")
        return value


def _refuse_nul(value: Any, path: str) -> None:
    """Text with a NUL character is refused everywhere (no database column holds it)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid(f"{path or 'the body'}: text must not hold a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, path)
            _refuse_nul(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_nul(item, f"{path}[{i}]")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _data(request: Request) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise invalid(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise invalid(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    return bytes(data)


NO_BODY = Body((), required=False)


async def read(request: Request, body: Body | None) -> dict[str, Any] | bytes | None:
    """The request's body as ``body`` declares it: a checked JSON object, or PEM bytes. A
    route without one (``body`` None) takes none, or an empty JSON object, and gets None.
    ApiError 400 / 413 / 415 otherwise."""
    if body is None:
        await read(request, NO_BODY)
        return None
    kind = media_type(request)
    if kind and kind not in body.media_types:
        raise invalid(f"the body must be {' or '.join(body.media_types)}, not {kind}", 415)
    data = await _data(request)
    if not data.strip():
        if body.required:
            raise invalid(f"this route needs a body ({' or '.join(body.media_types)})")
        return {}
    if not kind:
        expected = " or ".join(body.media_types)
        raise invalid(f"the body must be {expected}; say so in Content-Type", 415)
    return data if kind in PEM_TYPES else body.parse(data)
