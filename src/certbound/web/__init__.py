"""Certbound's HTTP side: the ASGI app, its routes, and the one mapping of errors to HTTP."""
