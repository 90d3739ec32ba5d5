"""The System Log ``filter`` language: SCIM filters (RFC 7644 section 3.4.2.2, as Okta's System
Log API uses them) parsed with a lark grammar into SQLAlchemy expressions over ``log_events``.

Grammar (LALR)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*          -- "and" binds tighter than "or"
    and_expr   := unary ("and" unary)*
    unary      := "not" "(" or_expr ")" | "(" or_expr ")" | attrPath op value | attrPath "pr"
    op         := eq | co | sw | ew | gt | ge | lt | le
    value      := "JSON string" | number | true | false | null

Operators and the keywords ``and or not pr`` are case-insensitive; attribute names are
case-sensitive (``eventType``, ``outcome.reason``) as in Okta. Strings are double-quoted with
JSON escapes. Only the attributes of :data:`ATTRIBUTES` may be named; anything else, bad syntax
or an unusable value raises :class:`FilterError` with a message that names the problem and its
position. An empty filter is an error, never "all rows".

Semantics, the same on SQLite and PostgreSQL:

- Every value is a bound parameter; nothing from the filter text reaches the SQL text.
- ``eq`` is exact and case-sensitive, except on the certificate serial number and thumbprint
  (below). ``gt ge lt le`` compare strings lexically by code point (``COLLATE "C"`` on
  PostgreSQL, so the database's locale does not change the order).
- ``co sw ew`` are case-insensitive ``LIKE`` matches (``ILIKE`` on PostgreSQL; SQLite folds
  ASCII letters only). ``%``, ``_`` and the escape character ``/`` in the value are escaped, so
  they match themselves.
- ``pr`` is true when the attribute has a non-empty value.
- A comparison is false (never NULL) on an event without the attribute, so ``not (...)``
  selects exactly the events the inner filter does not.
- ``published`` takes an RFC 3339 date-time with a ``Z`` or an offset, compared as an instant;
  it supports ``eq gt ge lt le pr``.
- ``deviceTrust.certificate.serialNumber`` is stored as upper-case hex without colons; the
  value is upper-cased and its colons dropped, so ``"0a:1b"`` finds ``0A1B``.
  ``deviceTrust.certificate.sha256Thumbprint`` is stored as lower-case hex and the value is
  lower-cased. Both therefore compare case-insensitively.
- ``target.id`` matches one whole id among the event's targets, case-sensitively; it supports
  ``eq`` and ``pr``.
- Numbers, ``true``, ``false`` and ``null`` parse, but every filterable attribute is a string
  or a date-time, so using one is an error that says so (use ``pr`` / ``not (... pr)`` to ask
  whether an attribute is present).
- A filter is at most :data:`MAX_FILTER_LENGTH` characters, :data:`MAX_DEPTH` levels of nested
  parentheses / ``not``, and :data:`MAX_COMPARISONS` comparisons.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from sqlalchemy import ColumnElement, and_, func, not_, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Integer, String

from certbound.clock import parse_rfc3339
from certbound.storage.models import LogEvent

MAX_FILTER_LENGTH = 2_000
MAX_DEPTH = 16
MAX_COMPARISONS = 64
LIKE_ESCAPE = "/"


class FilterError(ValueError):
    """A filter that cannot be used: bad syntax, an unknown attribute, an unusable value.

    ``column`` is the 1-based character position of the problem in the filter, when known.
    """

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


class Kind(enum.Enum):
    """How an attribute's values are compared."""

    TEXT = "text"
    DATETIME = "datetime"
    SERIAL = "serial"  # upper-case hex, colons dropped
    THUMBPRINT = "thumbprint"  # lower-case hex
    TOKENS = "tokens"  # " id1 id2 ": one whole token matches


_STRING_OPS = frozenset({"eq", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_OPS_BY_KIND: Mapping[Kind, frozenset[str]] = {
    Kind.TEXT: _STRING_OPS,
    Kind.SERIAL: _STRING_OPS,
    Kind.THUMBPRINT: _STRING_OPS,
    Kind.DATETIME: frozenset({"eq", "gt", "ge", "lt", "le"}),
    Kind.TOKENS: frozenset({"eq"}),
}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One filterable attribute: its name in the event JSON and the column holding it."""

    name: str
    column: InstrumentedAttribute[Any]
    kind: Kind
    description: str

    @property
    def operators(self) -> frozenset[str]:
        """The comparison operators it supports (``pr`` is always supported)."""
        return _OPS_BY_KIND[self.kind]


def _attributes(*attrs: Attribute) -> Mapping[str, Attribute]:
    return MappingProxyType({a.name: a for a in attrs})


# The allow-list: the only names a filter may use, each mapped to its LogEvent column.
ATTRIBUTES: Mapping[str, Attribute] = _attributes(
    Attribute("uuid", LogEvent.uuid, Kind.TEXT, "the event's id"),
    Attribute("published", LogEvent.published, Kind.DATETIME, "when it happened (RFC 3339)"),
    Attribute("eventType", LogEvent.event_type, Kind.TEXT, "e.g. device.trust.verify"),
    Attribute("severity", LogEvent.severity, Kind.TEXT, "DEBUG, INFO, WARN or ERROR"),
    Attribute("displayMessage", LogEvent.display_message, Kind.TEXT, "the human summary"),
    Attribute("outcome.result", LogEvent.outcome_result, Kind.TEXT, "SUCCESS, FAILURE, ..."),
    Attribute("outcome.reason", LogEvent.outcome_reason, Kind.TEXT, "the reason code"),
    Attribute("actor.id", LogEvent.actor_id, Kind.TEXT, "who acted"),
    Attribute("actor.alternateId", LogEvent.actor_alternate_id, Kind.TEXT, "who acted (name)"),
    Attribute("client.ipAddress", LogEvent.client_ip, Kind.TEXT, "the client's address"),
    Attribute("transaction.id", LogEvent.transaction_id, Kind.TEXT, "the request's id"),
    Attribute("target.id", LogEvent.target_ids, Kind.TOKENS, "the id of any target"),
    Attribute(
        "deviceTrust.certificate.serialNumber",
        LogEvent.device_serial,
        Kind.SERIAL,
        "device certificate serial (hex, any case)",
    ),
    Attribute(
        "deviceTrust.certificate.subjectDn",
        LogEvent.device_subject_dn,
        Kind.TEXT,
        "device certificate subject (RFC 4514)",
    ),
    Attribute(
        "deviceTrust.certificate.issuerDn",
        LogEvent.device_issuer_dn,
        Kind.TEXT,
        "device certificate issuer (RFC 4514)",
    ),
    Attribute(
        "deviceTrust.certificate.sha256Thumbprint",
        LogEvent.device_thumbprint,
        Kind.THUMBPRINT,
        "SHA-256 of the certificate's DER (hex, any case)",
    ),
)

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: unary (_AND unary)*
?unary: _NOT LPAR or_expr RPAR -> not_expr
      | LPAR or_expr RPAR -> group
      | ATTR OP value -> comparison
      | ATTR _PR -> present
?value: STRING | NUMBER | TRUE | FALSE | NULL

LPAR: "("
RPAR: ")"
_OR.2: /or(?![\w.])/i
_AND.2: /and(?![\w.])/i
_NOT.2: /not(?![\w.])/i
_PR.2: /pr(?![\w.])/i
OP.2: /(eq|co|sw|ew|gt|ge|lt|le)(?![\w.])/i
TRUE.2: /true(?![\w.])/
FALSE.2: /false(?![\w.])/
NULL.2: /null(?![\w.])/
ATTR: /[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*/
STRING: /"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/
NUMBER: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/
%ignore /[ \t\r\n]+/
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)

# What a lark terminal means to a person reading an error message, in the order they are listed.
_EXPECTED_WORDS = {
    "ATTR": "an attribute name",
    "LPAR": "'('",
    "_NOT": "'not'",
    "OP": "an operator (eq, co, sw, ew, gt, ge, lt, le) or pr",
    "_PR": "an operator (eq, co, sw, ew, gt, ge, lt, le) or pr",
    "STRING": 'a value (a "double-quoted string")',
    "NUMBER": 'a value (a "double-quoted string")',
    "TRUE": 'a value (a "double-quoted string")',
    "FALSE": 'a value (a "double-quoted string")',
    "NULL": 'a value (a "double-quoted string")',
    "_AND": "'and'",
    "_OR": "'or'",
    "RPAR": "')'",
    "$END": "the end of the filter",
}


def _expected(names: set[str]) -> str:
    words = list(dict.fromkeys(w for n, w in _EXPECTED_WORDS.items() if n in names))
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _accepted(prefix: str) -> set[str]:
    """The terminals the grammar accepts after ``prefix`` (which lexes and parses so far).
    Asked afresh because LALR may already have reduced past the point of the error."""
    parser = _PARSER.parse_interactive(prefix)
    try:
        parser.exhaust_lexer()
    except UnexpectedInput:  # pragma: no cover - the prefix parsed once already
        return set()
    return set(parser.accepts())  # type: ignore[no-untyped-call]  # lark leaves it unannotated


def _near(expr: str, index: int) -> str:
    rest = expr[index : index + 20]
    return f"near {rest!r}" if rest else "at the end"


def _error_index(expr: str, exc: UnexpectedInput) -> int:
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        return exc.token.start_pos or 0
    if isinstance(exc, UnexpectedCharacters):
        return exc.pos_in_stream or 0
    return len(expr)


def _syntax_error(expr: str, exc: UnexpectedInput) -> FilterError:
    index = _error_index(expr, exc)
    if isinstance(exc, UnexpectedCharacters) and expr[index] == '"':
        return FilterError(
            f"malformed string value at character {index + 1}: a value is enclosed in "
            'double quotes and uses JSON escapes only (\\" \\\\ \\/ \\b \\f \\n \\r '
            "\\t \\uXXXX)",
            index + 1,
        )
    accepted = _accepted(expr[:index])
    if expr[index : index + 1] == ")" and "$END" in accepted:
        what = "unmatched ')'"
    else:
        what = f"{_near(expr, index)}: expected {_expected(accepted)}"
    return FilterError(f"filter syntax error at character {index + 1}, {what}", index + 1)


def _unknown_attribute(token: Token) -> FilterError:
    name = str(token)
    hint = ""
    folded = {n.lower(): n for n in ATTRIBUTES}
    if name.lower() in folded:
        hint = f" (attribute names are case-sensitive: did you mean {folded[name.lower()]}?)"
    return FilterError(
        f"unknown attribute {name!r} at character {_column(token)}{hint}; "
        f"filterable attributes are: {', '.join(ATTRIBUTES)}",
        _column(token),
    )


def _column(token: Token) -> int:
    return (token.start_pos or 0) + 1


def _string_value(value: Token) -> str:
    text = json.loads(str(value))
    assert isinstance(text, str)
    if "\x00" in text:
        raise FilterError(
            f"the value at character {_column(value)} contains a NUL character", _column(value)
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(
            f"the value at character {_column(value)} contains a lone UTF-16 surrogate escape",
            _column(value),
        ) from None
    return text


def like_escape(text: str) -> str:
    """``text`` with LIKE's wildcards and the escape character escaped (``ESCAPE '/'``)."""
    return re.sub(r"([%_/])", r"/\1", text)


class _bytewise(FunctionElement[str]):  # noqa: N801 - SQL construct, named like a function
    """A string expression compared by code point: ``x COLLATE "C"`` on PostgreSQL; SQLite's
    default BINARY collation already compares that way."""

    type = String()
    inherit_cache = True


@compiles(_bytewise)
def _bytewise_default(element: _bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_bytewise, "postgresql")
def _bytewise_postgresql(element: _bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


class _position(FunctionElement[int]):  # noqa: N801 - SQL construct, named like a function
    """Where the second string first occurs in the first, case-sensitively (0: nowhere):
    ``strpos`` on PostgreSQL, ``instr`` on SQLite."""

    type = Integer()
    inherit_cache = True


@compiles(_position)
def _position_default(element: _position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(_position, "postgresql")
def _position_postgresql(element: _position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


_ORDERING: Mapping[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda c, v: c == v,
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
}

_LIKE_PATTERN: Mapping[str, Callable[[str], str]] = {
    "co": lambda v: f"%{like_escape(v)}%",
    "sw": lambda v: f"{like_escape(v)}%",
    "ew": lambda v: f"%{like_escape(v)}",
}


def _normalised(attr: Attribute, text: str) -> str:
    if attr.kind is Kind.SERIAL:
        return text.replace(":", "").upper()
    if attr.kind is Kind.THUMBPRINT:
        return text.replace(":", "").lower()
    return text


def _datetime_value(value: Token) -> Any:
    text = _string_value(value) if value.type == "STRING" else None
    if text is None or not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text
    ):
        raise FilterError(
            f"published takes an RFC 3339 date-time in double quotes with a Z or an offset, "
            f'such as "2025-01-31T08:00:00Z" (character {_column(value)})',
            _column(value),
        )
    try:
        return parse_rfc3339(text)
    except (ValueError, OverflowError):
        raise FilterError(
            f"published: {text!r} is not a valid date-time (character {_column(value)})",
            _column(value),
        ) from None


def _with_value(attr: Attribute, expression: ColumnElement[bool]) -> ColumnElement[bool]:
    """A comparison that is false, not NULL, when the event lacks the attribute."""
    if attr.column.nullable:
        return and_(attr.column.is_not(None), expression)
    return expression


def _compare(attr: Attribute, op_token: Token, value: Token) -> ColumnElement[bool]:
    op = str(op_token).lower()
    if op not in attr.operators:
        raise FilterError(
            f"operator {op!r} does not apply to {attr.name} (character {_column(op_token)}); "
            f"it supports: {', '.join(sorted(attr.operators))}, pr",
            _column(op_token),
        )
    if attr.kind is Kind.DATETIME:
        return _ORDERING[op](attr.column, _datetime_value(value))
    if value.type != "STRING":
        raise FilterError(
            f"{attr.name} takes a double-quoted string, not {value!s} "
            f"(character {_column(value)}); to test whether it is set, use "
            f"'{attr.name} pr' or 'not ({attr.name} pr)'",
            _column(value),
        )
    text = _normalised(attr, _string_value(value))
    if attr.kind is Kind.TOKENS:
        # rows.py stores each id with its spaces turned into "_", between single spaces.
        # LIKE finds the candidates; SQLite's LIKE ignores ASCII case, so the exact position
        # test keeps eq case-sensitive on both databases.
        token = f" {text.replace(' ', '_')} "
        pattern = f"%{like_escape(token)}%"
        exact = _position(attr.column, token) > 0
        return _with_value(attr, and_(attr.column.like(pattern, escape=LIKE_ESCAPE), exact))
    if op in _LIKE_PATTERN:
        pattern = _LIKE_PATTERN[op](text)
        return _with_value(attr, attr.column.ilike(pattern, escape=LIKE_ESCAPE))
    column: Any = attr.column if op == "eq" else _bytewise(attr.column)
    return _with_value(attr, _ORDERING[op](column, text))


def _present(attr: Attribute) -> ColumnElement[bool]:
    if attr.kind is Kind.DATETIME:
        return attr.column.is_not(None)
    if attr.kind is Kind.TOKENS:
        return and_(attr.column.is_not(None), func.trim(attr.column) != "")
    return and_(attr.column.is_not(None), attr.column != "")


class _Compiler:
    """Walks the parse tree top-down, enforcing the depth and size limits as it goes."""

    def __init__(self) -> None:
        self.comparisons = 0

    def build(self, tree: Tree[Token] | Token, depth: int) -> ColumnElement[bool]:
        assert isinstance(tree, Tree)
        kind = str(tree.data)
        if kind in {"group", "not_expr"}:
            if depth >= MAX_DEPTH:
                token = tree.children[0]
                assert isinstance(token, Token)
                raise FilterError(
                    f"filter nests deeper than {MAX_DEPTH} levels at character {_column(token)}",
                    _column(token),
                )
            inner = self.build(tree.children[1], depth + 1)
            return not_(inner) if kind == "not_expr" else inner
        if kind == "or_expr":
            return or_(*(self.build(child, depth) for child in tree.children))
        if kind == "and_expr":
            return and_(*(self.build(child, depth) for child in tree.children))
        return self._leaf(kind, tree.children)

    def _leaf(self, kind: str, children: list[Tree[Token] | Token]) -> ColumnElement[bool]:
        self.comparisons += 1
        name = children[0]
        assert isinstance(name, Token)
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError(
                f"filter has more than {MAX_COMPARISONS} comparisons (character {_column(name)})",
                _column(name),
            )
        attr = ATTRIBUTES.get(str(name))
        if attr is None:
            raise _unknown_attribute(name)
        if kind == "present":
            return _present(attr)
        op, value = children[1], children[2]
        assert isinstance(op, Token) and isinstance(value, Token)
        return _compare(attr, op, value)


def parse_filter(expr: str) -> ColumnElement[bool]:
    """The SQL condition (over :class:`LogEvent`) a SCIM filter selects; raises FilterError."""
    if not isinstance(expr, str):
        raise FilterError("filter must be a string")
    if not expr.strip():
        raise FilterError(
            'filter is empty; give an expression such as eventType eq "device.trust.verify", '
            "or leave the filter out to select every event"
        )
    if len(expr) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"filter is {len(expr)} characters long; at most {MAX_FILTER_LENGTH} are allowed"
        )
    try:
        tree = _PARSER.parse(expr)
    except UnexpectedInput as exc:
        raise _syntax_error(expr, exc) from None
    return _Compiler().build(tree, 0)
