"""``certbound doctor [--json]``: every sign-on policy analysed, findings grouped by policy.

Each policy goes through :func:`certbound.policy.analysis.analyse` with the ids that exist
now (groups, users, trust-store CAs, zones) and the apps that require device trust (an mTLS
client authentication method, or certificate-bound access tokens in their metadata). The
default policy is analysed for the apps without a policy of their own, so its ALLOW
catch-all is flagged (NO_DEVICE_TRUST_RULE) as long as such an app requires device trust.
Every finding is printed with its fix. Exit 1 when any finding is an ERROR, else 0.
"""

from __future__ import annotations

import click
from rich.text import Text

from certbound.cli.main import EXIT_FAILED, EXIT_OK, Context, pass_context
from certbound.cli.output import make_console, print_json
from certbound.clock import SystemClock
from certbound.policy.analysis import Finding, analyse
from certbound.policy.model import Policy
from certbound.policy.store import Policies, apps_requiring_device_trust, effective, known_ids
from certbound.storage.database import Database

_STYLES = {"ERROR": "bold red", "WARNING": "yellow"}


def diagnose_policies(db: Database) -> list[tuple[Policy, list[Finding]]]:
    """Every policy (with the apps it applies to) and its findings."""
    policies = Policies(db, SystemClock()).list()
    with db.session() as session:
        known = known_ids(session)
        requiring = apps_requiring_device_trust(session)
        applied = [effective(session, policy) for policy in policies]
    return [
        (policy, analyse(policy, known=known, apps_requiring_device_trust=requiring))
        for policy in applied
    ]


def _print(results: list[tuple[Policy, list[Finding]]]) -> None:
    console = make_console(wide_off_terminal=True)
    for policy, findings in results:
        default = ", default" if policy.is_default else ""
        apps = len(policy.app_ids)
        head = f"{policy.name} ({policy.id}{default}, {apps} app{'s' if apps != 1 else ''})"
        console.print(Text(head, style="bold"))
        if not findings:
            console.print(Text("  ok: no findings", style="green"))
        for finding in findings:
            label = f"{finding.severity} {finding.kind}"
            console.print(
                Text.assemble("  ", (label, _STYLES[finding.severity]), ": ", finding.message)
            )
            console.print(Text(f"    fix: {finding.fix}"))
    errors = sum(f.severity == "ERROR" for _, found in results for f in found)
    warnings = sum(f.severity == "WARNING" for _, found in results for f in found)
    console.print(Text(f"{len(results)} policies: {errors} error(s), {warnings} warning(s)"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def doctor(ctx: Context, as_json: bool) -> None:
    """Analyse every sign-on policy: shadowed or unreachable rules, dangling references,
    apps that require device trust but let unverified devices in.

    Exit 1 when a finding is an ERROR, else 0.
    """
    results = diagnose_policies(ctx.database())
    errors = sum(f.severity == "ERROR" for _, found in results for f in found)
    if as_json:
        print_json(
            {
                "policies": [
                    {
                        "id": policy.id,
                        "name": policy.name,
                        "isDefault": policy.is_default,
                        "appIds": list(policy.app_ids),
                        "findings": [f.to_dict() for f in findings],
                    }
                    for policy, findings in results
                ],
                "errors": errors,
                "warnings": sum(len(found) for _, found in results) - errors,
            }
        )
    else:
        _print(results)
    raise click.exceptions.Exit(EXIT_FAILED if errors else EXIT_OK)
