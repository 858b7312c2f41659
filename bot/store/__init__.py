"""Persistence: SQLAlchemy 2.0 typed models, Alembic migrations, one engine per process.

Tables live in modules named after what they hold (foundation.py here; later capabilities add their own
module and their own Alembic revision branching from the foundation one, applied together with
`upgrade heads`).
"""

from bot.store.base import Base
from bot.store.engine import Store

__all__ = ["Base", "Store"]
