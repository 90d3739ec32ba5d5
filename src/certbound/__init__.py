"""Certbound: a self-hosted device-trust identity server."""

__version__ = "0.1.0"
