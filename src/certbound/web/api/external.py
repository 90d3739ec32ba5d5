"""The ``/api/v1`` routes other modules serve, described here so that the OpenAPI document,
the permission matrix and the role check cover them like the rest:

- ``GET /api/v1/logs``: the System Log (:mod:`certbound.web.logs`), ``logs.read``;
- ``POST /api/v1/policies/simulate``: a simulated sign-on (:mod:`certbound.web.policies`),
  ``policies.read`` (it changes nothing), checked by :func:`certbound.web.auth.authenticate`;
- ``GET /api/v1/intake/echo`` (:mod:`certbound.web.intake`) and
  ``GET /api/v1/openapi.json`` (:mod:`certbound.web.api.openapi`): public.
"""

from __future__ import annotations

from certbound.admin.roles import Permission
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Operation, Param

LOGS_QUERY = (
    Param("filter", "SCIM filter expression (docs/api.md)."),
    Param("q", "Words every event must contain."),
    Param("since", "RFC 3339: events published at or after."),
    Param("until", "RFC 3339: events published before; makes the query bounded."),
    Param("limit", "1 to 1000, default 100."),
    Param("after", "The cursor of a rel=next link."),
    Param("sortOrder", "ASCENDING (default) or DESCENDING (needs until).",
          ("ASCENDING", "DESCENDING")),
)  # fmt: skip
SIMULATE = Body(
    (
        Field("app", Kind.STRING, "The app's id or client_id.", required=True),
        Field("user", Kind.STRING, "A user's id or username."),
        Field("certificate", Kind.STRING, "A PEM chain, leaf first."),
        Field("ip", Kind.STRING, "The client's IP address."),
        Field("at", Kind.STRING, "RFC 3339 time (default: now)."),
        Field("policy", Kind.OBJECT, "A draft policy evaluated instead of the app's."),
    )
)

OPERATIONS = (
    Operation("GET", "/api/v1/logs", "Query the System Log", "system log", Permission.LOGS_READ,
              query=LOGS_QUERY),
    Operation("POST", "/api/v1/policies/simulate", "Simulate a sign-on", "policies",
              Permission.POLICIES_READ, body=SIMULATE),
    Operation("GET", "/api/v1/intake/echo", "What Certbound saw of the request's device",
              "intake", None),
    Operation("GET", "/api/v1/openapi.json", "This OpenAPI document", "openapi", None),
)  # fmt: skip
