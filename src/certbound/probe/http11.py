"""One HTTP/1.1 request and its response, spoken by hand (h11) on the probe's TLS session.

The request goes over the very connection whose handshake was just watched, so the
certificate Certbound judges is the one the report describes. ``Connection: close``: one
request per connection. The response is bounded in size; the session bounds it in time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h11

from certbound import __version__

from .inputs import Target
from .session import TlsSession

MAX_BODY = 1024 * 1024
_MAX_EVENTS = 100_000


class HttpError(Exception):
    """The server's answer is not usable HTTP (malformed, too large, cut short)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def excerpt(self, limit: int = 200) -> str:
        text = " ".join(self.body[:limit].decode("utf-8", "replace").split())
        return text + ("..." if len(self.body) > limit else "")


def _send_request(
    client: h11.Connection,
    method: str,
    target: Target,
    path: str,
    *,
    body: bytes | None,
    content_type: str | None,
) -> bytes:
    headers = [
        ("Host", target.authority),
        ("User-Agent", f"certbound-handshake/{__version__}"),
        ("Accept", "application/json"),
        ("Connection", "close"),
    ]
    if body is not None:
        headers += [("Content-Type", content_type or "application/octet-stream")]
        headers += [("Content-Length", str(len(body)))]
    out = client.send(h11.Request(method=method, target=path, headers=headers)) or b""
    if body is not None:
        out += client.send(h11.Data(data=body)) or b""
    return out + (client.send(h11.EndOfMessage()) or b"")


def exchange(
    session: TlsSession,
    target: Target,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
) -> HttpResponse:
    """Send one request and read its response (raises SessionError or HttpError)."""
    client = h11.Connection(h11.CLIENT)
    session.send(_send_request(client, method, target, path, body=body, content_type=content_type))
    head, body_read = _read_response(client, session)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
    return HttpResponse(head.status_code, head.reason.decode("latin-1"), headers, body_read)


def _read_response(client: h11.Connection, session: TlsSession) -> tuple[h11.Response, bytes]:
    head: h11.Response | None = None
    chunks: list[bytes] = []
    size = 0
    for _ in range(_MAX_EVENTS):
        try:
            event = client.next_event()
        except h11.RemoteProtocolError as exc:
            if head is None and client.their_state is h11.SEND_RESPONSE and not size:
                raise HttpError("the server closed the connection without an answer") from exc
            raise HttpError(f"the server's answer is not valid HTTP/1.1: {exc}") from exc
        if event is h11.NEED_DATA:
            client.receive_data(session.recv())
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise HttpError(f"the response body is larger than {MAX_BODY} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    else:
        raise HttpError("the response did not end")
    if head is None:
        raise HttpError("the server closed the connection without an HTTP response")
    return head, b"".join(chunks)
