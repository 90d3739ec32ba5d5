"""``certbound serve``: run the HTTP app (:func:`certbound.web.app.create_app`) under uvicorn."""

from __future__ import annotations

import ipaddress

import click
import uvicorn

from certbound.cli.main import Context, pass_context
from certbound.clock import SystemClock
from certbound.web.app import create_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port."
)
@pass_context
def serve(ctx: Context, host: str, port: int) -> None:
    """Run the server: the admin API (GET /api/v1/logs), /healthz and /readyz.

    This release serves plain HTTP only; the built-in mTLS listener arrives in a later
    release. Plain HTTP carries API tokens in clear text, so keep the default loopback
    address, or put a TLS-terminating reverse proxy in front and listen only where that
    proxy can reach. Reads the same config as every command (--config, CERTBOUND_*).
    """
    if not is_loopback(host):
        click.echo(
            f"warning: serving plain HTTP on {host}: API tokens cross the network unencrypted "
            "unless a TLS-terminating proxy is the only thing that can reach this address",
            err=True,
        )
    app = create_app(ctx.settings, database=ctx.database(), clock=SystemClock())
    # uvicorn trusts X-Forwarded-Proto/-For from 127.0.0.1 only (its default), so a local
    # TLS-terminating proxy gets https:// Link headers.
    uvicorn.run(app, host=host, port=port, log_level="info")
