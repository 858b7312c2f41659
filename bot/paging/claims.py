"""Who is delivering a page right now. A page's Slack part and its PagerDuty part are claimed apart (columns
claim_holder/claim_until and pd_claim_holder/pd_claim_until), so neither waits for the other; each claim is one
conditional UPDATE on the database's clock, held for at most its own seconds, released when the work is done.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Callable, TypeVar

from sqlalchemy import or_, update

from bot.paging.tables import Page
from bot.store.foundation import database_now

T = TypeVar("T")
SLACK = ("claim_holder", "claim_until")
PAGERDUTY = ("pd_claim_holder", "pd_claim_until")


def holding(services, page_id: int, part: tuple[str, str], *, seconds: float, wait: float,
            work: Callable[[], T]) -> T | None:
    """Runs `work` while holding the page's claim for `part` (SLACK or PAGERDUTY); None, without running it,
    when another process holds that claim for longer than `wait`."""
    holder_column, until_column = (getattr(Page, name) for name in part)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait
    while True:
        with services.store.session() as s:
            now = database_now(s)
            if s.execute(update(Page).where(Page.id == page_id, or_(until_column.is_(None), until_column < now))
                         .values({part[0]: holder, part[1]: now + timedelta(seconds=seconds)})).rowcount == 1:
                break
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
    try:
        return work()
    finally:
        with services.store.session() as s:
            s.execute(update(Page).where(Page.id == page_id, holder_column == holder)
                      .values({part[0]: None, part[1]: None}))
