"""The audit log: every mutating command, allowed or not, with who, what, why and the outcome."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.store import Store
from bot.store.base import utcnow
from bot.store.foundation import AuditEntry


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
    with store.session() as s:
        s.add(
            AuditEntry(
                at=utcnow(), user_id=user_id, action=action, model=model, outcome=outcome, reason=reason, detail=detail
            )
        )


def recent(store: Store, model: str | None = None, limit: int = 20) -> list[AuditEntry]:
    with store.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if model:
            q = q.where(AuditEntry.model == model)
        return list(s.scalars(q))
