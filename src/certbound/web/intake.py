"""The device-trust context of a request, and ``GET /api/v1/intake/echo``, which shows it.

:func:`device_decision` runs intake (:class:`certbound.intake.resolve.Intake`) and the
device-trust decision (:class:`certbound.devices.trust.DeviceTrust`) once per request and
keeps the answer on ``request.state`` for the rest of the request. A device seen recently is
decided on the event loop from cached answers (a few microseconds); anything else (a cold
validation, a CRL download, an OCSP request, a first sighting, the registry's periodic
poll) is decided in a worker thread, so the event loop never waits for I/O.

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
from certbound.intake.resolve import Intake
from certbound.syslog.events import Client
from certbound.web.responses import FastJSONResponse


def _decide(request: Request, offline: bool = False) -> TrustDecision:
    intake: Intake = request.app.state.intake
    trust: DeviceTrust = request.app.state.device_trust
    headers = request.headers
    presented = intake.presented(request.scope, headers)
    client = Client(
        intake.client_address(request.scope, headers, presented), headers.get("user-agent")
    )
    return trust.evaluate(presented, client, offline=offline)


async def device_decision(request: Request) -> TrustDecision:
    """The request's device-trust decision (decided and logged on first use)."""
    decision: TrustDecision | None = getattr(request.state, "device_decision", None)
    if decision is None:
        try:
            decision = _decide(request, offline=True)
        except WouldBlockError:
            decision = await run_in_threadpool(_decide, request)
        request.state.device_decision = decision
    return decision


async def echo(request: Request) -> Response:
    decision = await device_decision(request)
    return FastJSONResponse(decision.to_dict(), headers={"cache-control": "no-store"})


ROUTES = [Route("/api/v1/intake/echo", echo, methods=["GET"])]
