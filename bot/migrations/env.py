import fcntl
from contextlib import contextmanager
from pathlib import Path

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.store.engine import make_engine

config = context.config
# Web and worker processes migrate at start, possibly at the same moment: serialise them.
MIGRATION_LOCK_ID = 774_201_001


@contextmanager
def _sqlite_file_lock(url: str):
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_suffix(Path(database).suffix + ".migrate.lock")
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
                connection.commit()
                try:
                    context.configure(connection=connection, compare_type=True)
                    with context.begin_transaction():
                        context.run_migrations()
                    connection.commit()
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
                    connection.commit()
        else:
            with _sqlite_file_lock(url), engine.connect() as connection:
                context.configure(connection=connection, render_as_batch=True, compare_type=True)
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
