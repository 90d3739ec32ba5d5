"""Intake: how a client certificate chain reaches Certbound, and the only code that knows.

A chain arrives from the built-in TLS listener (:mod:`certbound.intake.tls`) or in a header
set by a trusted proxy (:mod:`certbound.intake.proxy`, :mod:`certbound.intake.proxies`);
:mod:`certbound.intake.resolve` turns an ASGI request scope into a
:class:`~certbound.intake.chain.Presented`, which the rest of Certbound judges without
caring where it came from.
"""
