"""How commands print: rich consoles, JSON documents, and refusals with their reason code.

A refusal (a :class:`~certbound.errors.CertboundError`) prints ``error <CODE>: <detail>`` and
``fix: ...`` on stderr, or ``{"error": {reason, detail, fix, context}}`` with ``--json``, and
exits 2 (usage or input error).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from certbound.cli.main import EXIT_USAGE
from certbound.errors import CertboundError, ReasonCode


def make_console(stderr: bool = False, *, wide_off_terminal: bool = False) -> Console:
    """A console without markup guessing; ``wide_off_terminal``: 200 columns when writing to
    a file or a pipe, so ids and times are never cut."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if wide_off_terminal and not out.is_terminal:
        out.width = 200
    return out


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def refuse(reason: ReasonCode, detail: str) -> NoReturn:
    """``error <CODE>: <detail>`` and the fix on stderr; exit 2."""
    err = make_console(stderr=True)
    err.print(Text.assemble(("error ", "bold red"), (reason.value, "bold"), ": ", detail))
    err.print(Text.assemble(("fix: ", "bold"), reason.fix))
    raise click.exceptions.Exit(EXIT_USAGE)


def fail(exc: CertboundError, as_json: bool) -> NoReturn:
    """A refused operation, as text or (``as_json``) as a JSON error document; exit 2."""
    if not as_json:
        refuse(exc.reason, exc.detail)
    error = {
        "reason": exc.reason.value,
        "detail": exc.detail,
        "fix": exc.reason.fix,
        "context": exc.context,
    }
    print_json({"error": error})
    raise click.exceptions.Exit(EXIT_USAGE)
