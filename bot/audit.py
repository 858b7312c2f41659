"""The audit log: every mutating command, allowed or not, with who, what, why and the outcome.

An action that changes something writes its row in the action's own transaction (`add`, called with the
session that commits the change): a process that dies right after the change cannot leave it unaudited, and
a change that was not committed is not audited as done. What changes nothing (a refusal, a stale prompt, a
failure before anything was written) is recorded on its own (`record`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store import Store
from bot.store.base import utcnow
from bot.store.foundation import AuditEntry


def add(session: Session, *, user_id: str, action: str, model: str | None, outcome: str, reason: str | None = None,
        **detail: Any) -> None:
    """The row, in the caller's transaction (the one that commits what is audited)."""
    session.add(AuditEntry(at=utcnow(), user_id=user_id, action=action, model=model, outcome=outcome,
                           reason=reason, detail=detail))


def record(
    store: Store,
    *,
    user_id: str,
    action: str,
    model: str | None,
    outcome: str,
    reason: str | None = None,
    **detail: Any,
) -> None:
    """The row in a transaction of its own: for outcomes that changed nothing."""
    with store.session() as s:
        add(s, user_id=user_id, action=action, model=model, outcome=outcome, reason=reason, **detail)


def recent(store: Store, model: str | None = None, limit: int = 20) -> list[AuditEntry]:
    with store.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if model:
            q = q.where(AuditEntry.model == model)
        return list(s.scalars(q))
