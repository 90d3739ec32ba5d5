"""The ``certbound`` command group and what every command shares: settings and exit codes.

Exit codes: 0 success, 1 a check failed (``verify`` said FAILED), 2 a usage or input error
(bad arguments, unreadable files, a rejected upload).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from certbound import __version__
from certbound.config import ConfigError, Settings, load_settings
from certbound.storage.database import Database

if TYPE_CHECKING:
    from certbound.syslog.recorder import EventRecorder

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Context:
    """Per-invocation state; the database is opened (and migrated) on first use."""

    config_file: Path | None
    _settings: Settings | None = None
    _database: Database | None = field(default=None, repr=False)
    _recorder: EventRecorder | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file)
            except ConfigError as exc:
                raise click.UsageError(str(exc)) from exc
        return self._settings

    def database(self) -> Database:
        if self._database is None:
            self._database = Database(self.settings.database_url)
            self._database.migrate()
        return self._database

    def recorder(self) -> EventRecorder:
        """The System Log recorder; closing the context flushes it."""
        if self._recorder is None:
            from certbound.clock import SystemClock
            from certbound.syslog.recorder import EventRecorder

            self._recorder = EventRecorder(
                self.database(),
                SystemClock(),
                spool_dir=self.settings.spool_dir,
                queue_size=self.settings.log_queue_size,
            )
        return self._recorder

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
        if self._database is not None:
            self._database.dispose()


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CERTBOUND_CONFIG",
    help="Config file (TOML). Default: $CERTBOUND_CONFIG.",
)
@click.version_option(__version__, prog_name="certbound")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """Certbound: device trust with mTLS client certificates."""
    state = Context(config_file)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register() -> None:
    from certbound.cli import commands

    commands.register(cli)


def main() -> None:
    _register()
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
