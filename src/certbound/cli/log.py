"""``certbound log``: read the System Log, follow it, verify its hash chain, purge old events.

``certbound log [--filter EXPR] [--q WORDS] [--since T] [--until T] [--limit N] [--follow]
[--json]`` runs the same query as ``GET /api/v1/logs`` (:mod:`certbound.syslog.query`) and
prints a table (time, event type, outcome, reason, actor, device serial) or, with
``--json``, one event per line. ``log verify`` walks the hash chain; ``log purge`` applies
the retention period. A bad filter or parameter prints ``error <REASON_CODE>: <detail>``
and exits 2; ``log verify`` exits 1 when the chain is broken.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certbound.cli.main import EXIT_FAILED, Context, pass_context
from certbound.cli.output import refuse
from certbound.clock import SystemClock, parse_rfc3339
from certbound.errors import ReasonCode
from certbound.syslog.chain import verify_chain
from certbound.syslog.events import CLI_ACTOR
from certbound.syslog.filter import ATTRIBUTES, FilterError
from certbound.syslog.query import LogQuery, QueryError, search
from certbound.syslog.retention import purge as purge_events

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Columns of the table: (header, width).
_COLUMNS = (
    ("time", 27),
    ("event type", 24),
    ("outcome", 7),
    ("reason", 25),
    ("actor", 20),
    ("device serial", 40),
)
# Seconds between polls in --follow when the last page was not full.
POLL_SECONDS = 1.0


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """An RFC 3339 time, or a time before ``now``: ``30s``, ``15m``, ``2h``, ``7d``."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return parse_rfc3339(text)


def _time_option(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, SystemClock().now())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an RFC 3339 time (2025-01-31T12:00:00Z) nor 15m, 2h, 7d",
            param=param,
        ) from None


def _get(event: Mapping[str, Any], *path: str) -> str:
    value: Any = event
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def row_of(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The table cells of one event."""
    return (
        _get(event, "published"),
        _get(event, "eventType"),
        _get(event, "outcome", "result"),
        _get(event, "outcome", "reason"),
        _get(event, "actor", "alternateId") or _get(event, "actor", "id"),
        _get(event, "deviceTrust", "certificate", "serialNumber"),
    )


def console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200  # never fold cells when writing to a file or a pipe
    return console


class _Printer:
    """Prints events as table rows (fixed widths, so --follow batches line up) or JSON lines."""

    def __init__(self, as_json: bool) -> None:
        self._as_json = as_json
        self._console = console()
        self._header = True

    def print(self, events: Sequence[Mapping[str, Any]]) -> None:
        if self._as_json:
            for event in events:
                click.echo(json.dumps(event, sort_keys=True))
            return
        if not events and not self._header:
            return
        table = Table(box=None, show_header=self._header, pad_edge=False, header_style="bold")
        for header, width in _COLUMNS:
            table.add_column(header, min_width=width, no_wrap=True)
        for event in events:
            table.add_row(*(Text(cell) for cell in row_of(event)))  # never markup
        self._console.print(table)
        self._header = False


def _run_query(ctx: Context, query: LogQuery, printer: _Printer) -> None:
    page = search(ctx.database(), query, SystemClock().now())
    printer.print(page.events)


def _follow(ctx: Context, query: LogQuery, printer: _Printer, max_seconds: float | None) -> None:
    """Print every page, then poll with the cursor until interrupted or out of time."""
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while True:
        page = search(ctx.database(), query, SystemClock().now())
        printer.print(page.events)
        if page.next_cursor is not None:
            query = dataclasses.replace(query, after=page.next_cursor)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        if len(page.events) < query.limit:
            time.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))


@click.group(
    invoke_without_command=True,
    epilog="Filter attributes: " + ", ".join(ATTRIBUTES) + ".",
)
@click.option(
    "--filter",
    "filter_",
    metavar="EXPR",
    help="SCIM filter, e.g. 'eventType eq \"device.trust.verify\"'.",
)
@click.option("--q", "words", metavar="WORDS", help="Words every event must contain.")
@click.option(
    "--since",
    metavar="T",
    callback=_time_option,
    help="From this time (RFC 3339 or 15m/2h/7d ago; default 7d).",
)
@click.option(
    "--until",
    metavar="T",
    callback=_time_option,
    help="Up to this time (RFC 3339 or 15m/2h/7d ago).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Most events to print (with --follow: per poll).",
)
@click.option(
    "--sort-order",
    type=click.Choice(["ASCENDING", "DESCENDING"]),
    default="ASCENDING",
    show_default=True,
    help="Oldest or newest first; DESCENDING needs --until.",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.option("--max-seconds", type=click.FloatRange(min=0), hidden=True)
@pass_context
@click.pass_context
def log(
    click_ctx: click.Context,
    ctx: Context,
    filter_: str | None,
    words: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    sort_order: str,
    follow: bool,
    as_json: bool,
    max_seconds: float | None,
) -> None:
    """Print System Log events (oldest first, from 7 days ago unless --since).

    --filter takes a SCIM expression (eq co sw ew gt ge lt le pr, and/or/not, parentheses,
    double-quoted values) over the attributes listed below. T is an RFC 3339 time or a
    time before now (30s, 15m, 2h, 7d). With --follow the query polls every second for new
    events until Ctrl-C.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    order: Literal["ASCENDING", "DESCENDING"] = (
        "DESCENDING" if sort_order == "DESCENDING" else "ASCENDING"
    )
    if follow and until is not None:
        raise click.UsageError("--follow tails new events: it cannot have --until")
    if follow and order == "DESCENDING":
        raise click.UsageError("--follow prints events oldest first: drop --sort-order")
    query = LogQuery(
        filter=filter_, q=words, since=since, until=until, limit=limit, sort_order=order
    )
    printer = _Printer(as_json)
    try:
        if follow:
            _follow(ctx, query, printer, max_seconds)
        else:
            _run_query(ctx, query, printer)
    except FilterError as exc:
        refuse(ReasonCode.INVALID_FILTER, f"invalid filter: {exc}")
    except QueryError as exc:
        refuse(ReasonCode.INVALID_QUERY, str(exc))
    except KeyboardInterrupt:
        return


@log.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def verify(ctx: Context, as_json: bool) -> None:
    """Walk the hash chain; name the first edited, inserted or deleted event (exit 1)."""
    report = verify_chain(ctx.database())
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
    elif report.ok:
        click.echo(f"System Log chain OK: {report.checked} event(s) checked")
        click.echo(
            f"head: seq {report.head_seq} hash {report.head_hash} (keep it elsewhere to pin)"
        )
    else:
        where = (
            f"event {report.first_bad_uuid} (seq {report.first_bad_seq})"
            if report.first_bad_uuid
            else f"seq {report.first_bad_seq} (no such event)"
        )
        detail = f" ({report.detail})" if report.detail else ""
        click.echo(
            f"System Log chain BROKEN at {where}: {report.problem}{detail}; "
            f"{report.checked} event(s) checked before it"
        )
    if not report.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


@log.command("purge")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=0),
    help="Delete events older than this many days (default: log_retention_days).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def purge(ctx: Context, days: int | None, as_json: bool) -> None:
    """Delete events past the retention period; the chain stays verifiable."""
    days = ctx.settings.log_retention_days if days is None else days
    now = SystemClock().now()
    older_than = now - dt.timedelta(days=days)
    count = purge_events(ctx.database(), ctx.recorder(), older_than, now, actor=CLI_ACTOR)
    if as_json:
        click.echo(json.dumps({"purged": count, "olderThanDays": days}))
    else:
        click.echo(f"purged {count} event(s) older than {days} day(s)")
