"""Finding a row by what an admin types: its id, its unique name, else that name in another case.

Users, groups and admins are named by id (``usr_...``) or by a name that is unique; a name is
matched exactly first, then without regard to case (the oldest id wins when two names differ
only in case).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

Row = TypeVar("Row")


def find_by_reference(
    session: Session,
    model: type[Row],
    name: InstrumentedAttribute[str],
    id_prefix: str,
    ref: str,
) -> Row | None:
    """The ``model`` row ``ref`` names (id, else ``name``, else ``name`` in any case)."""
    text = ref.strip()
    if text.startswith(id_prefix):
        row = session.get(model, text)
        if row is not None:
            return row
    found: Any = session.scalars(select(model).where(name == text)).first()
    if found is None:
        primary: Any = model.id  # type: ignore[attr-defined]
        query = select(model).where(func.lower(name) == text.lower()).order_by(primary)
        found = session.scalars(query).first()
    return found  # type: ignore[no-any-return]
