"""Sign-on policies and network zones in the database, and the compiled policy of each app.

:class:`Policies` creates, changes and deletes policies and their rules, and assigns apps to
them; :class:`Zones` does the same for network zones. A policy is named by its id
(``pol_...``) or name, a rule by its id (``rul_...``) or name within its policy, a zone by
its id (``nzn_...``) or name.

Every change of a policy (its name or description, an app assigned or unassigned, a rule
added, changed, moved or deleted) bumps its ``revision`` and answers a :class:`PolicyChange`:
the policy before and after, and the warnings :func:`certbound.policy.analysis.new_findings`
reports for it (a rule the change shadows, a dangling reference...). The caller records the
change as an event (:mod:`certbound.policy.events`) and shows the warnings.

Rules. A policy's last rule is its catch-all: no conditions, never moved or deleted
(``CATCH_ALL_RULE_FIXED``); only its name and action change. A new rule goes just above the
catch-all unless a priority (1-based) is given; a rule moves to any priority above it.

The default policy. An app without a policy of its own uses the default policy, ``Default
Policy``, created on first use with one catch-all rule that ALLOWs, so an organisation that
never wrote a policy keeps signing in as before (``certbound doctor`` flags it for every app
that requires device trust). It cannot be deleted; assigning an app to it removes the app's
own assignment.

Every change to a policy, rule, assignment or zone also bumps the one-row ``policy_state``
generation. :class:`CompiledPolicies`, the sign-on paths' cache, reads that generation at
most every ``poll_interval`` (2 s) per process, one small query, and recompiles every policy
when it moved: a change reaches every instance within 2 s, and at once in the process that
made it. Between polls it answers from memory (a dictionary look-up), so the token endpoint
decides a known app without I/O; with ``offline`` a poll that is due raises
:class:`~certbound.errors.WouldBlockError` instead.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import itertools
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certbound.clock import Clock
from certbound.directory import apps as directory_apps
from certbound.directory.apps import MTLS_METHODS, ClientMetadata
from certbound.errors import CertboundError, ReasonCode, WouldBlockError
from certbound.policy.analysis import Finding, KnownIds, new_findings
from certbound.policy.engine import CompiledPolicy, PolicyCache
from certbound.policy.model import (
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_RULES,
    POLICY_PREFIX,
    RULE_PREFIX,
    ZONE_PREFIX,
    Action,
    Conditions,
    Policy,
    Rule,
    Zone,
    check_rules,
    invalid,
)
from certbound.storage.database import Database
from certbound.storage.models import App as AppRow
from certbound.storage.models import (
    CertificateAuthority,
    NetworkZoneRow,
    PolicyAppRow,
    PolicyRow,
    PolicyRuleRow,
    PolicyState,
)
from certbound.storage.models import Group as GroupRow
from certbound.storage.models import User as UserRow

DEFAULT_POLICY_ID = "pol_default"
DEFAULT_POLICY_NAME = "Default Policy"
DEFAULT_CATCH_ALL_ID = "rul_default_catch_all"
DEFAULT_DESCRIPTION = (
    "Used by every app without a policy of its own. Its catch-all allows, so sign-ins work "
    "before any policy is written; give apps that require device trust their own policy."
)
CATCH_ALL_NAME = "Catch-all"
POLL_INTERVAL = 2.0
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)

# Bumped by every change made through this process: its caches reload at once.
_changes = itertools.count(1)
_generation = [0]


def _changed() -> None:
    _generation[0] = next(_changes)


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """A change of a policy: ``before`` (None: created), ``after`` (None: deleted), the
    rule the change was about, and the warnings it raised."""

    before: Policy | None
    after: Policy | None
    warnings: tuple[Finding, ...] = ()
    rule: Rule | None = None
    moved_from: Policy | None = None  # assign: the policy the app had before (not default)


@dataclass(frozen=True, slots=True)
class ZoneChange:
    """A change of a zone; ``referenced_by``: the ids of the policies naming it (a deleted
    zone leaves them a dangling reference, which ``certbound doctor`` reports)."""

    before: Zone | None
    after: Zone | None
    referenced_by: tuple[str, ...] = ()


# --- errors --------------------------------------------------------------------------------


def _policy_not_found(ref: str) -> CertboundError:
    return CertboundError(
        ReasonCode.POLICY_NOT_FOUND, f"no policy has the id or name {ref!r}", {"ref": ref}
    )


def _rule_not_found(policy: Policy, ref: str, detail: str | None = None) -> CertboundError:
    return CertboundError(
        ReasonCode.RULE_NOT_FOUND,
        detail or f"policy {policy.name!r} has no rule with the id or name {ref!r}",
        {"policyId": policy.id, "ref": ref},
    )


def _zone_not_found(ref: str) -> CertboundError:
    return CertboundError(
        ReasonCode.ZONE_NOT_FOUND, f"no network zone has the id or name {ref!r}", {"ref": ref}
    )


def _fixed(detail: str, rule: Rule) -> CertboundError:
    return CertboundError(ReasonCode.CATCH_ALL_RULE_FIXED, detail, {"ruleId": rule.id})


def _name(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH or not cleaned.isprintable():
        raise invalid(field, f"must be 1 to {MAX_NAME_LENGTH} printable characters")
    return cleaned


def _description(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_DESCRIPTION_LENGTH or not value.isprintable():
        raise invalid("description", f"at most {MAX_DESCRIPTION_LENGTH} printable characters")
    return value


# --- rows and values -----------------------------------------------------------------------


def _rules(session: Session, policy_id: str) -> tuple[Rule, ...]:
    query = (
        select(PolicyRuleRow.id, PolicyRuleRow.name, PolicyRuleRow.action,
               PolicyRuleRow.conditions, PolicyRuleRow.catch_all)
        .where(PolicyRuleRow.policy_id == policy_id)
        .order_by(PolicyRuleRow.position)
    )  # fmt: skip
    return tuple(
        Rule(rule_id, name, Action(action), Conditions.from_dict(json.loads(text)), catch_all)
        for rule_id, name, action, text, catch_all in session.execute(query)
    )


def _app_ids(session: Session, policy_id: str) -> tuple[str, ...]:
    query = select(PolicyAppRow.app_id).where(PolicyAppRow.policy_id == policy_id)
    return tuple(sorted(session.scalars(query)))


def _policy(session: Session, row: PolicyRow) -> Policy:
    return Policy(
        id=row.id,
        name=row.name,
        description=row.description,
        rules=_rules(session, row.id),
        app_ids=_app_ids(session, row.id),
        is_default=row.is_default,
        revision=row.revision,
    )


def _zone(row: NetworkZoneRow) -> Zone:
    return Zone(row.id, row.name, tuple(json.loads(row.cidrs)))


def _write_rules(session: Session, policy_id: str, rules: tuple[Rule, ...]) -> None:
    """Replace a policy's rule rows by ``rules`` in order (positions 1..n)."""
    session.execute(delete(PolicyRuleRow).where(PolicyRuleRow.policy_id == policy_id))
    if rules:
        session.execute(
            insert(PolicyRuleRow),
            [
                {
                    "id": rule.id,
                    "policy_id": policy_id,
                    "position": position,
                    "name": rule.name,
                    "action": rule.action.value,
                    "conditions": json.dumps(rule.conditions.to_dict(), sort_keys=True),
                    "catch_all": rule.catch_all,
                }
                for position, rule in enumerate(rules, start=1)
            ],
        )


def find_policy(session: Session, ref: str) -> PolicyRow | None:
    """The policy ``ref`` names: its id, else its name."""
    text = ref.strip()
    if text.startswith(POLICY_PREFIX):
        row = session.get(PolicyRow, text)
        if row is not None:
            return row
    return session.scalars(select(PolicyRow).where(PolicyRow.name == text)).first()


def _lookup(session: Session, ref: str) -> PolicyRow:
    row = find_policy(session, ref)
    if row is None:
        raise _policy_not_found(ref)
    return row


def _find_zone(session: Session, ref: str) -> NetworkZoneRow | None:
    text = ref.strip()
    if text.startswith(ZONE_PREFIX):
        row = session.get(NetworkZoneRow, text)
        if row is not None:
            return row
    return session.scalars(select(NetworkZoneRow).where(NetworkZoneRow.name == text)).first()


def rule_index(policy: Policy, ref: str) -> int:
    """The index of the rule ``ref`` names in ``policy.rules``: its id, else its name (a
    name several rules share must be given as an id). RULE_NOT_FOUND."""
    text = ref.strip()
    for i, rule in enumerate(policy.rules):
        if rule.id == text:
            return i
    named = [i for i, rule in enumerate(policy.rules) if rule.name == text]
    if len(named) > 1:
        ids = ", ".join(policy.rules[i].id for i in named)
        raise _rule_not_found(
            policy, ref, f"several rules are named {text!r} ({ids}): name one by id"
        )
    if not named:
        raise _rule_not_found(policy, ref)
    return named[0]


# --- the generation every instance polls -----------------------------------------------------


def _bump(session: Session) -> None:
    """Move the policy generation (its row lock also orders concurrent changes)."""
    moved = session.execute(
        update(PolicyState)
        .where(PolicyState.id == 1)
        .values(generation=PolicyState.generation + 1)
        .execution_options(synchronize_session=False)
    )
    if not getattr(moved, "rowcount", 0):  # the row is gone: start again somewhere new
        session.add(PolicyState(id=1, generation=secrets.randbits(48)))
        session.flush()


def read_generation(session: Session) -> int | None:
    """The policy generation (None when its row is missing)."""
    value = session.scalar(select(PolicyState.generation).where(PolicyState.id == 1))
    return None if value is None else int(value)


def _default_rows(now: dt.datetime) -> tuple[PolicyRow, Rule]:
    row = PolicyRow(
        id=DEFAULT_POLICY_ID, name=DEFAULT_POLICY_NAME, description=DEFAULT_DESCRIPTION,
        is_default=True, revision=1, created=now, updated=now,
    )  # fmt: skip
    return row, Rule(DEFAULT_CATCH_ALL_ID, CATCH_ALL_NAME, Action.ALLOW, catch_all=True)


def ensure_default(db: Database, clock: Clock) -> None:
    """Create the default policy when there is none (another process may at the same
    moment: the loser's insert fails on the id and the winner's stands)."""
    query = select(PolicyRow.id).where(PolicyRow.is_default.is_(True)).limit(1)
    with db.session() as session:
        if session.scalar(query) is not None:
            return
    row, catch_all = _default_rows(clock.now())
    try:
        with db.session() as session:
            session.add(row)
            session.flush()
            _write_rules(session, row.id, (catch_all,))
            _bump(session)
    except IntegrityError:
        with db.session() as session:
            if session.scalar(query) is None:
                raise
    _changed()


# --- what analysis needs -----------------------------------------------------------------------


def known_ids(session: Session) -> KnownIds:
    """The ids that exist now: groups, users, trust-store CAs, zones."""
    return KnownIds(
        group_ids=frozenset(session.scalars(select(GroupRow.id))),
        user_ids=frozenset(session.scalars(select(UserRow.id))),
        ca_ids=frozenset(session.scalars(select(CertificateAuthority.id))),
        zone_ids=frozenset(session.scalars(select(NetworkZoneRow.id))),
    )


def requires_device_trust(metadata: ClientMetadata) -> bool:
    """Whether an app requires device trust: an mTLS client authentication method, or
    certificate-bound access tokens."""
    method = metadata.token_endpoint_auth_method
    return method in MTLS_METHODS or metadata.tls_client_certificate_bound_access_tokens


def apps_requiring_device_trust(session: Session) -> frozenset[str]:
    """The ids of the apps that require device trust (see :func:`requires_device_trust`)."""
    out = set()
    for app_id, text in session.execute(select(AppRow.id, AppRow.metadata_json)):
        if requires_device_trust(ClientMetadata.from_dict(json.loads(text))):
            out.add(app_id)
    return frozenset(out)


def effective(session: Session, policy: Policy) -> Policy:
    """The policy with the apps it applies to: the default policy applies to every app
    without an assignment of its own."""
    if not policy.is_default:
        return policy
    assigned = select(PolicyAppRow.app_id)
    query = select(AppRow.id).where(AppRow.id.not_in(assigned)).order_by(AppRow.id)
    return dataclasses.replace(policy, app_ids=tuple(session.scalars(query)))


def _warnings(session: Session, before: Policy | None, after: Policy) -> tuple[Finding, ...]:
    known = known_ids(session)
    requiring = apps_requiring_device_trust(session)
    old = None if before is None else effective(session, before)
    found = new_findings(
        old, effective(session, after), known=known, apps_requiring_device_trust=requiring
    )
    return tuple(found)


# --- policies ------------------------------------------------------------------------------

Edit = Callable[[Policy], tuple[Policy, Rule | None]]


class Policies:
    """The sign-on policies in the database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._ensured = False

    def _ready(self) -> None:
        if not self._ensured:
            ensure_default(self._db, self._clock)
            self._ensured = True

    # reading ---------------------------------------------------------------------------

    def list(self) -> builtins.list[Policy]:
        """Every policy, the default first, then by name."""
        self._ready()
        query = select(PolicyRow).order_by(PolicyRow.is_default.desc(), PolicyRow.name)
        with self._db.session() as session:
            return [_policy(session, row) for row in session.scalars(query)]

    def get(self, ref: str) -> Policy:
        """The policy ``ref`` names: its id or name (POLICY_NOT_FOUND)."""
        self._ready()
        with self._db.session() as session:
            return _policy(session, _lookup(session, ref))

    def default(self) -> Policy:
        return self.get(DEFAULT_POLICY_ID)

    def for_app(self, app_id: str) -> Policy:
        """The policy an app uses: its own, else the default."""
        self._ready()
        with self._db.session() as session:
            policy_id = session.scalar(
                select(PolicyAppRow.policy_id).where(PolicyAppRow.app_id == app_id)
            )
            return _policy(session, _lookup(session, policy_id or DEFAULT_POLICY_ID))

    def effective(self, policy: Policy) -> Policy:
        """``policy`` with the apps it applies to (for the default: every app without its
        own policy)."""
        with self._db.session() as session:
            return effective(session, policy)

    # policies --------------------------------------------------------------------------

    def create(
        self,
        name: str,
        description: str | None = None,
        *,
        catch_all: Action = Action.DENY,
        rules: tuple[Rule, ...] = (),
    ) -> PolicyChange:
        """A new policy: ``rules`` (new ids are given to them) above a catch-all that takes
        ``catch_all`` (DENY unless told). NAME_TAKEN when the name is in use."""
        self._ready()
        cleaned = _name(name, "name")
        if len(rules) + 1 > MAX_RULES:
            raise invalid("rules", f"at most {MAX_RULES} rules")
        fresh = tuple(
            dataclasses.replace(rule, id=RULE_PREFIX + secrets.token_hex(8), catch_all=False)
            for rule in rules
        )
        last = Rule(RULE_PREFIX + secrets.token_hex(8), CATCH_ALL_NAME, catch_all, catch_all=True)
        now = self._clock.now()
        row = PolicyRow(
            id=POLICY_PREFIX + secrets.token_hex(8), name=cleaned,
            description=_description(description), is_default=False, revision=1, created=now,
            updated=now,
        )  # fmt: skip
        policy = Policy(row.id, cleaned, row.description, (*fresh, last))
        check_rules(policy.rules)
        try:
            with self._db.session() as session:
                _bump(session)
                if find_policy(session, cleaned) is not None:
                    raise _taken(cleaned)
                session.add(row)
                session.flush()
                _write_rules(session, row.id, policy.rules)
                warnings = _warnings(session, None, policy)
        except IntegrityError:
            raise _taken(cleaned) from None
        _changed()
        return PolicyChange(None, policy, warnings)

    def update(
        self, ref: str, *, name: str | None = None, description: str | None = None
    ) -> PolicyChange:
        """A new name or description (an empty description removes it)."""

        def edit(policy: Policy) -> tuple[Policy, Rule | None]:
            new = policy
            if name is not None:
                new = dataclasses.replace(new, name=_name(name, "name"))
            if description is not None:
                new = dataclasses.replace(new, description=_description(description))
            return new, None

        try:
            return self._change(ref, edit)
        except IntegrityError:
            raise _taken(name or "") from None

    def delete(self, ref: str) -> PolicyChange:
        """Remove a policy; its apps fall back to the default policy. The default policy
        cannot be deleted (POLICY_INVALID)."""
        self._ready()
        with self._db.session() as session:
            _bump(session)
            row = _lookup(session, ref)
            before = _policy(session, row)
            if row.is_default:
                raise invalid("isDefault", "the default policy cannot be deleted")
            session.delete(row)
        _changed()
        return PolicyChange(before, None)

    def assign(self, ref: str, app_ref: str) -> PolicyChange:
        """Make ``app_ref`` (its id or client_id) use this policy; it leaves the policy it
        had (``moved_from``). Assigning to the default policy removes its own assignment."""
        self._ready()
        with self._db.session() as session:
            _bump(session)
            row = _lookup(session, ref)
            app = directory_apps.lookup(session, app_ref)
            before = _policy(session, row)
            current = session.get(PolicyAppRow, app.id)
            moved_from = None
            if current is not None and current.policy_id != row.id:
                other = session.get(PolicyRow, current.policy_id)
                if other is not None:
                    moved_from = _policy(session, other)
                    other.revision += 1
                    other.updated = self._clock.now()
                session.delete(current)
                session.flush()
            if not row.is_default and (current is None or current.policy_id != row.id):
                session.add(PolicyAppRow(app_id=app.id, policy_id=row.id))
            change = self._finish(session, row, before, None, moved_from)
        _changed()
        return change

    def unassign(self, ref: str, app_ref: str) -> PolicyChange:
        """The app leaves this policy for the default (nothing changes when it did not
        use it, but the revision)."""
        self._ready()
        with self._db.session() as session:
            _bump(session)
            row = _lookup(session, ref)
            app = directory_apps.lookup(session, app_ref)
            before = _policy(session, row)
            session.execute(
                delete(PolicyAppRow).where(
                    PolicyAppRow.app_id == app.id, PolicyAppRow.policy_id == row.id
                )
            )
            change = self._finish(session, row, before, None, None)
        _changed()
        return change

    def _finish(
        self,
        session: Session,
        row: PolicyRow,
        before: Policy,
        rule: Rule | None,
        moved_from: Policy | None,
    ) -> PolicyChange:
        """Bump the revision, read the policy back and compute the warnings (in the
        change's transaction)."""
        row.revision = before.revision + 1
        row.updated = self._clock.now()
        session.flush()
        after = _policy(session, row)
        warnings = _warnings(session, before, after)
        return PolicyChange(before, after, warnings, rule, moved_from)

    def _change(self, ref: str, edit: Edit) -> PolicyChange:
        """Apply ``edit`` to the policy ``ref`` names and store the result."""
        self._ready()
        with self._db.session() as session:
            _bump(session)
            row = _lookup(session, ref)
            before = _policy(session, row)
            after, rule = edit(before)
            check_rules(after.rules)
            if after.name != before.name and find_policy(session, after.name) is not None:
                raise _taken(after.name)
            row.name, row.description = after.name, after.description
            if after.rules != before.rules:
                _write_rules(session, row.id, after.rules)
            change = self._finish(session, row, before, rule, None)
        _changed()
        return change

    # rules -----------------------------------------------------------------------------

    def add_rule(
        self,
        ref: str,
        name: str,
        action: Action,
        conditions: Conditions,
        *,
        priority: int | None = None,
    ) -> PolicyChange:
        """A new rule at ``priority`` (1-based; default: just above the catch-all)."""
        rule = Rule(RULE_PREFIX + secrets.token_hex(8), _name(name, "name"), action, conditions)

        def edit(policy: Policy) -> tuple[Policy, Rule | None]:
            last = len(policy.rules)  # the catch-all's priority
            at = last if priority is None else priority
            _check_priority(policy, at, "a new rule goes")
            if len(policy.rules) >= MAX_RULES:
                raise invalid("rules", f"at most {MAX_RULES} rules")
            rules = (*policy.rules[: at - 1], rule, *policy.rules[at - 1 :])
            return dataclasses.replace(policy, rules=rules), rule

        return self._change(ref, edit)

    def update_rule(
        self,
        ref: str,
        rule_ref: str,
        *,
        name: str | None = None,
        action: Action | None = None,
        conditions: Conditions | None = None,
    ) -> PolicyChange:
        """A rule's new name, action or conditions (the catch-all's conditions stay none:
        CATCH_ALL_RULE_FIXED)."""

        def edit(policy: Policy) -> tuple[Policy, Rule | None]:
            i = rule_index(policy, rule_ref)
            rule = policy.rules[i]
            if rule.catch_all and conditions is not None and not conditions.empty:
                raise _fixed(
                    f"the catch-all rule {rule.name!r} has no conditions: add a rule above it",
                    rule,
                )
            new = dataclasses.replace(
                rule,
                name=_name(name, "name") if name is not None else rule.name,
                action=action or rule.action,
                conditions=conditions if conditions is not None else rule.conditions,
            )
            rules = (*policy.rules[:i], new, *policy.rules[i + 1 :])
            return dataclasses.replace(policy, rules=rules), new

        return self._change(ref, edit)

    def move_rule(self, ref: str, rule_ref: str, priority: int) -> PolicyChange:
        """Move a rule to ``priority`` (1-based), never onto or below the catch-all."""

        def edit(policy: Policy) -> tuple[Policy, Rule | None]:
            i = rule_index(policy, rule_ref)
            rule = policy.rules[i]
            if rule.catch_all:
                raise _fixed(f"the catch-all rule {rule.name!r} stays last", rule)
            _check_priority(policy, priority, "a rule moves", moving=True)
            rest = policy.rules[:i] + policy.rules[i + 1 :]
            rules = (*rest[: priority - 1], rule, *rest[priority - 1 :])
            return dataclasses.replace(policy, rules=rules), rule

        return self._change(ref, edit)

    def delete_rule(self, ref: str, rule_ref: str) -> PolicyChange:
        """Remove a rule (never the catch-all)."""

        def edit(policy: Policy) -> tuple[Policy, Rule | None]:
            i = rule_index(policy, rule_ref)
            rule = policy.rules[i]
            if rule.catch_all:
                raise _fixed(f"the catch-all rule {rule.name!r} cannot be deleted", rule)
            return dataclasses.replace(policy, rules=policy.rules[:i] + policy.rules[i + 1 :]), rule

        return self._change(ref, edit)


def _check_priority(policy: Policy, priority: int, what: str, *, moving: bool = False) -> None:
    """1 .. the catch-all's priority when adding (the new rule goes above it), 1 .. the
    last rule above the catch-all when moving."""
    highest = len(policy.rules) - (1 if moving else 0)
    if priority < 1:
        raise invalid("priority", f"must be 1 or more, not {priority}")
    if priority > highest:
        raise _fixed(
            f"priority {priority} is not above the catch-all rule {policy.catch_all.name!r} "
            f"(priority {len(policy.rules)}), which stays last: {what} to priority {highest} "
            "at the lowest",
            policy.catch_all,
        )


def _taken(name: str) -> CertboundError:
    return CertboundError(
        ReasonCode.NAME_TAKEN, f"a policy or zone named {name!r} exists", {"name": name}
    )


# --- zones ---------------------------------------------------------------------------------


def _zone_value(zone_id: str, name: str, cidrs: builtins.list[str]) -> Zone:
    """A zone checked as the model checks it (POLICY_INVALID naming the field)."""
    return Zone.from_dict({"id": zone_id, "name": _name(name, "name"), "cidrs": cidrs})


def _referencing(session: Session, zone_id: str) -> tuple[str, ...]:
    query = select(PolicyRuleRow.policy_id, PolicyRuleRow.conditions).where(
        PolicyRuleRow.conditions.contains(zone_id)
    )
    found = {
        policy_id
        for policy_id, text in session.execute(query)
        if zone_id in _zone_ids(Conditions.from_dict(json.loads(text)))
    }
    return tuple(sorted(found))


def _zone_ids(conditions: Conditions) -> set[str]:
    return {*conditions.network.include, *conditions.network.exclude}


class Zones:
    """The network zones in the database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def list(self) -> builtins.list[Zone]:
        with self._db.session() as session:
            rows = session.scalars(select(NetworkZoneRow).order_by(NetworkZoneRow.name))
            return [_zone(row) for row in rows]

    def get(self, ref: str) -> Zone:
        """The zone ``ref`` names: its id or name (ZONE_NOT_FOUND)."""
        with self._db.session() as session:
            row = _find_zone(session, ref)
            if row is None:
                raise _zone_not_found(ref)
            return _zone(row)

    def create(self, name: str, cidrs: builtins.list[str]) -> ZoneChange:
        """A new zone (NAME_TAKEN when the name is in use; POLICY_INVALID for a bad CIDR)."""
        zone = _zone_value(ZONE_PREFIX + secrets.token_hex(8), name, cidrs)
        now = self._clock.now()
        try:
            with self._db.session() as session:
                _bump(session)
                if _find_zone(session, zone.name) is not None:
                    raise _taken(zone.name)
                session.add(
                    NetworkZoneRow(
                        id=zone.id, name=zone.name, cidrs=json.dumps(list(zone.cidrs)),
                        created=now, updated=now,
                    )
                )  # fmt: skip
        except IntegrityError:
            raise _taken(zone.name) from None
        _changed()
        return ZoneChange(None, zone)

    def update(
        self, ref: str, *, name: str | None = None, cidrs: builtins.list[str] | None = None
    ) -> ZoneChange:
        """A zone's new name or networks (every policy naming it sees them)."""
        try:
            with self._db.session() as session:
                _bump(session)
                row = _find_zone(session, ref)
                if row is None:
                    raise _zone_not_found(ref)
                before = _zone(row)
                after = _zone_value(
                    row.id, name if name is not None else row.name,
                    list(cidrs) if cidrs is not None else list(before.cidrs),
                )  # fmt: skip
                if after.name != before.name and _find_zone(session, after.name) is not None:
                    raise _taken(after.name)
                row.name, row.cidrs = after.name, json.dumps(list(after.cidrs))
                row.updated = self._clock.now()
                used = _referencing(session, row.id)
        except IntegrityError:
            raise _taken(name or "") from None
        _changed()
        return ZoneChange(before, after, used)

    def delete(self, ref: str) -> ZoneChange:
        """Remove a zone; rules naming it keep a dangling reference (``referenced_by``):
        their ``network.include`` matches no address, ``network.exclude`` excludes none."""
        with self._db.session() as session:
            _bump(session)
            row = _find_zone(session, ref)
            if row is None:
                raise _zone_not_found(ref)
            before = _zone(row)
            used = _referencing(session, row.id)
            session.delete(row)
        _changed()
        return ZoneChange(before, None, used)


# --- the compiled policy of each app -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Every policy compiled, and which app uses which."""

    default: CompiledPolicy
    by_app: Mapping[str, CompiledPolicy]
    zones: Mapping[str, Zone]


def _snapshot(session: Session, cache: PolicyCache) -> _Snapshot:
    zones = {zone.id: zone for zone in map(_zone, session.scalars(select(NetworkZoneRow)))}
    compiled: dict[str, CompiledPolicy] = {}
    default: CompiledPolicy | None = None
    for row in session.scalars(select(PolicyRow)):
        policy = _policy(session, row)
        compiled[row.id] = cache.get(policy, zones)
        if row.is_default:
            default = compiled[row.id]
    if default is None:
        raise WouldBlockError("the default policy is not created yet")
    assignments = session.execute(select(PolicyAppRow.app_id, PolicyAppRow.policy_id))
    by_app = {app_id: compiled[policy_id] for app_id, policy_id in assignments}
    return _Snapshot(default, by_app, zones)


class CompiledPolicies:
    """The compiled policy of every app, for the sign-on paths (see the module docstring):
    :meth:`for_app` answers from memory and reloads when the generation moved."""

    def __init__(self, db: Database, clock: Clock, *, poll_interval: float = POLL_INTERVAL):
        if poll_interval < 0:
            raise ValueError("poll_interval is >= 0")
        self._db = db
        self._clock = clock
        self._interval = dt.timedelta(seconds=poll_interval)
        self._lock = threading.Lock()
        self._cache = PolicyCache()
        self._snapshot: _Snapshot | None = None
        self._poll_due = _EPOCH
        self._seen: tuple[int | None, int] | None = None  # (database, this process)
        self.reloads = 0

    def for_app(self, app_id: str | None, *, offline: bool = False) -> CompiledPolicy:
        """The compiled policy ``app_id`` uses (None or an app without its own: the
        default). With ``offline`` (on the event loop), WouldBlockError when a poll is due."""
        snapshot = self._current(offline)
        if app_id is None:
            return snapshot.default
        return snapshot.by_app.get(app_id, snapshot.default)

    def zones(self) -> Mapping[str, Zone]:
        """The zones (a draft policy is compiled against them)."""
        return self._current(False).zones

    def _current(self, offline: bool) -> _Snapshot:
        snapshot = self._snapshot
        if (
            snapshot is None
            or _generation[0] != self._seen_local
            or self._clock.now() >= self._poll_due
        ):
            if offline:
                raise WouldBlockError("policy revision poll due")
            snapshot = self._poll()
        return snapshot

    @property
    def _seen_local(self) -> int:
        return -1 if self._seen is None else self._seen[1]

    def _poll(self) -> _Snapshot:
        with self._lock:
            now = self._clock.now()
            snapshot = self._snapshot
            if snapshot is not None and _generation[0] == self._seen_local and now < self._poll_due:
                return snapshot  # another thread polled meanwhile
            if snapshot is None:
                ensure_default(self._db, self._clock)
            local = _generation[0]
            with self._db.session() as session:
                generation = read_generation(session)
                if snapshot is None or self._seen != (generation, local):
                    snapshot = _snapshot(session, self._cache)
                    self.reloads += 1
            self._snapshot, self._seen = snapshot, (generation, local)
            self._poll_due = now + self._interval
            return snapshot


def stored_zones(db: Database) -> dict[str, Zone]:
    """Every zone by id (compiling a policy outside the sign-on paths)."""
    with db.session() as session:
        return {zone.id: zone for zone in map(_zone, session.scalars(select(NetworkZoneRow)))}
