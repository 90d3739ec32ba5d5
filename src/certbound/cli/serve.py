"""``certbound serve``: run the app on the built-in TLS listener and/or a plain-HTTP listener.

- The TLS listener (``tls_listen``, :mod:`certbound.intake.tls`) asks every client for a
  certificate; with ``tls_client_verify = "accept"`` every chain reaches the app, which
  validates and logs it; with ``"reject"`` untrusted chains are refused inside the handshake
  with the matching alert, and logged.
- The plain-HTTP listener (``http_listen``: ``host:port`` or ``unix:/path``) is for a
  TLS-terminating proxy; certificate headers count only from ``trusted_proxies``.

Both run in one event loop over one app (its lifespan runs once); SIGINT and SIGTERM stop
both gracefully. Command-line options override the config file and environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import uvicorn
from starlette.applications import Starlette

from certbound.cli.main import EXIT_OK, EXIT_USAGE, Context, pass_context
from certbound.clock import SystemClock
from certbound.config import ConfigError, Settings
from certbound.errors import ReasonCode
from certbound.intake.tls import HandshakeRejection, TlsListener, TlsListenerConfig
from certbound.storage.database import Database
from certbound.web.app import create_app

UNIX_PREFIX = "unix:"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(value: str, key: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port); ConfigError naming ``key`` if not."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key} must be host:port (or [v6]:port), got {value!r}")
    return host, int(port)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: :func:`_run` handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_server(app: Starlette, settings: Settings, *, lifespan: str) -> _Server:
    common = {
        "lifespan": lifespan,
        "proxy_headers": False,  # intake reads forwarded headers itself, from trusted peers only
        "server_header": False,
        "access_log": False,  # every decision is in the System Log; the TLS listener has none
        "timeout_keep_alive": settings.keepalive_timeout,
        "limit_concurrency": settings.max_connections,
        "log_level": "info",
    }
    if settings.http_listen.startswith(UNIX_PREFIX):
        path = settings.http_listen.removeprefix(UNIX_PREFIX)
        return _Server(uvicorn.Config(app, uds=path, **common))  # type: ignore[arg-type]
    host, port = parse_address(settings.http_listen, "http_listen")
    return _Server(uvicorn.Config(app, host=host, port=port, **common))  # type: ignore[arg-type]


def _tls_listener(app: Starlette, settings: Settings) -> TlsListener:
    host, port = parse_address(settings.tls_listen, "tls_listen")
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ConfigError(
            "tls_listen needs tls_cert_file and tls_key_file (certbound quickstart writes "
            'them); set tls_listen = "" to run only the plain-HTTP listener'
        )
    config = TlsListenerConfig(
        host=host,
        port=port,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
        client_verify=settings.tls_client_verify,
        handshake_timeout=float(settings.tls_handshake_timeout),
        header_timeout=float(settings.request_header_timeout),
        keepalive_timeout=float(settings.keepalive_timeout),
        max_connections=settings.max_connections,
    )

    def judge(chain: tuple[bytes, ...]) -> tuple[ReasonCode, str] | None:
        return app.state.device_trust.judge(chain)  # type: ignore[no-any-return]

    def on_reject(rejection: HandshakeRejection) -> None:
        app.state.device_trust.record_rejection(rejection)

    reject = settings.tls_client_verify == "reject"
    return TlsListener(
        app,
        config,
        judge=judge if reject else None,
        on_reject=on_reject if reject else None,
        lifespan="on",
        install_signal_handlers=False,
    )


async def _run(app: Starlette, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tls = _tls_listener(app, settings) if settings.tls_listen else None
    http = None
    if settings.http_listen:
        http = _http_server(app, settings, lifespan="off" if tls else "on")
    if tls is not None:
        await tls.start()
        mode = settings.tls_client_verify
        click.echo(f"TLS listener on https://{settings.tls_listen} (client certificates: {mode})")
    tasks = []
    if http is not None:
        tasks.append(asyncio.create_task(http.serve()))
        click.echo(f"plain-HTTP listener on {settings.http_listen} (behind a trusted proxy)")
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if http is not None:
        http.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    if tls is not None:
        await tls.stop()
    waiter.cancel()


def _apply(settings: Settings, **overrides: str | Path | None) -> Settings:
    given = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(settings, **given)  # type: ignore[arg-type]


@click.command()
@click.option("--tls-listen", help='TLS listener host:port ("" turns it off). [config: tls_listen]')
@click.option("--http-listen", help="Plain-HTTP listener host:port or unix:/path. [http_listen]")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="Server cert.")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Server key.")
@click.option(
    "--client-verify",
    type=click.Choice(["accept", "reject"]),
    help="accept: validate in the app; reject: refuse untrusted chains in the handshake.",
)
@pass_context
def serve(
    ctx: Context,
    tls_listen: str | None,
    http_listen: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_verify: str | None,
) -> None:
    """Run the server: the built-in mTLS listener and/or a plain-HTTP listener for a proxy.

    Reads the same config as every command (--config, CERTBOUND_*); options override it.
    Plain HTTP carries API tokens and certificate headers in clear text: listen on loopback
    or a Unix socket that only the TLS-terminating proxy can reach.
    """
    settings = _apply(
        ctx.settings,
        tls_listen=tls_listen,
        http_listen=http_listen,
        tls_cert_file=tls_cert.resolve() if tls_cert else None,
        tls_key_file=tls_key.resolve() if tls_key else None,
        tls_client_verify=client_verify,
    )
    sys.exit(run_server(settings, ctx.database()))


def run_server(settings: Settings, database: Database) -> int:
    """Serve until SIGINT or SIGTERM; the exit code (usage errors print their reason)."""
    if not settings.tls_listen and not settings.http_listen:
        click.echo("error: nothing to serve: both tls_listen and http_listen are off", err=True)
        return EXIT_USAGE
    if settings.http_listen and not settings.http_listen.startswith(UNIX_PREFIX):
        http_host = settings.http_listen.rpartition(":")[0].strip("[]")
        if not is_loopback(http_host):
            click.echo(
                f"warning: plain HTTP on {settings.http_listen}: tokens and certificate "
                "headers cross the network unencrypted unless only the proxy can reach it",
                err=True,
            )
    try:
        app = create_app(settings, database=database, clock=SystemClock())
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run(app, settings))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except OSError as exc:  # the address is in use, the socket path is not writable, ...
        click.echo(f"error: cannot listen: {exc.strerror or exc}", err=True)
        return EXIT_USAGE
    return EXIT_OK


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    return uvloop.new_event_loop
