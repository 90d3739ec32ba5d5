"""The device-trust context of a request, and ``GET /api/v1/intake/echo``, which shows it.

:func:`device_decision` runs intake (:class:`certbound.intake.resolve.Intake`) and the
device-trust decision (:class:`certbound.devices.trust.DeviceTrust`) once per request and
keeps the answer on ``request.state`` for the rest of the request. A device seen recently is
decided on the event loop from cached answers (a few microseconds); anything else (a cold
validation, a CRL download, an OCSP request, a first sighting, the registry's periodic
poll) is decided in a worker thread, so the event loop never waits for I/O.

The decision is a ``device.trust.verify`` event of its own, unless the endpoint records it
in the one event of its action (the token endpoint's ``app.oauth2.token.grant`` carries the
same ``deviceTrust`` object): one event per decision.

The echo endpoint needs no API token: it is the self-test a device, a proxy operator or
``certbound handshake`` calls to learn what Certbound saw: the intake path, whether the hop
was trusted, the chain, the verdict, reason code and fix, the device, and the id of the
``device.trust.verify`` event that recorded it. It answers 200 whatever the verdict.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certbound.devices.trust import DeviceTrust, TrustDecision
from certbound.errors import WouldBlockError
from certbound.intake.chain import Presented
from certbound.intake.resolve import Intake
from certbound.syslog.events import Client
from certbound.web.responses import FastJSONResponse


def request_client(request: Request) -> Client:
    """The HTTP client of the request (its address as intake resolved it; once per request)."""
    client: Client | None = getattr(request.state, "client", None)
    if client is None:
        intake: Intake = request.app.state.intake
        headers = request.headers
        address = intake.client_address(request.scope, headers, presented_chain(request))
        client = request.state.client = Client(address, headers.get("user-agent"))
    return client


def presented_chain(request: Request) -> Presented:
    """What the request presented (once per request)."""
    presented: Presented | None = getattr(request.state, "presented", None)
    if presented is None:
        intake: Intake = request.app.state.intake
        presented = intake.presented(request.scope, request.headers)
        request.state.presented = presented
    return presented


def _decide(request: Request, offline: bool = False, record: bool = True) -> TrustDecision:
    trust: DeviceTrust = request.app.state.device_trust
    presented = presented_chain(request)
    client = request_client(request)
    return trust.evaluate(presented, client, offline=offline, record=record)


async def device_decision(request: Request, *, record: bool = True) -> TrustDecision:
    """The request's device-trust decision (decided on first use; with ``record``, logged
    as a ``device.trust.verify`` event)."""
    decision: TrustDecision | None = getattr(request.state, "device_decision", None)
    if decision is None:
        try:
            decision = _decide(request, True, record)
        except WouldBlockError:
            decision = await run_in_threadpool(_decide, request, False, record)
        request.state.device_decision = decision
    return decision


async def echo(request: Request) -> Response:
    decision = await device_decision(request)
    return FastJSONResponse(decision.to_dict(), headers={"cache-control": "no-store"})


ROUTES = [Route("/api/v1/intake/echo", echo, methods=["GET"])]
