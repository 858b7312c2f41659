"""The store on both databases: migrations apply (twice is harmless), claims and leases are exclusive."""

from datetime import timedelta

from sqlalchemy import inspect

from bot import audit
from bot.store import Store
from bot.store.foundation import acquire_lease, claim_delivery, release_lease


def test_migrations_create_foundation_tables_and_are_repeatable(database_url):
    store = Store(database_url)
    store.migrate()
    store.migrate()
    tables = set(inspect(store.engine).get_table_names())
    assert {"audit_log", "slack_deliveries", "threads", "job_leases", "alembic_version"} <= tables
    store.dispose()


def test_delivery_claimed_once(database_url):
    store = Store(database_url)
    store.migrate()
    with store.session() as s:
        assert claim_delivery(s, "event:Ev1") is True
    with store.session() as s:
        assert claim_delivery(s, "event:Ev1") is False
    store.dispose()


def test_lease_is_exclusive_until_released_or_expired(database_url):
    store = Store(database_url)
    store.migrate()
    with store.session() as s:
        assert acquire_lease(s, "watcher", "w1", timedelta(minutes=5))
    with store.session() as s:
        assert not acquire_lease(s, "watcher", "w2", timedelta(minutes=5))
        assert acquire_lease(s, "watcher", "w1", timedelta(minutes=5))  # renewal by the holder
        release_lease(s, "watcher", "w1")
    with store.session() as s:
        assert acquire_lease(s, "watcher", "w2", timedelta(seconds=-1))  # already expired
    with store.session() as s:
        assert acquire_lease(s, "watcher", "w3", timedelta(minutes=5))
    store.dispose()


def test_audit_log_round_trip(database_url):
    store = Store(database_url)
    store.migrate()
    audit.record(store, user_id="U0ALICE", action="rollback", model="churn", outcome="ok", reason="bad auc", rollout=3)
    [entry] = audit.recent(store, "churn")
    assert (entry.user_id, entry.action, entry.reason, entry.detail) == ("U0ALICE", "rollback", "bad auc", {"rollout": 3})
    store.dispose()


def test_a_transaction_that_reads_then_writes_survives_a_commit_in_between(sqlite_url):
    """SQLite in WAL mode fails a transaction that read and then writes with "database is locked" the moment
    another connection commits in between (the sandbox's quality job did, on every busy pass); store.writing()
    takes the write lock first, so the other writer waits for it instead."""
    import threading

    from sqlalchemy import text

    store = Store(sqlite_url)
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    other_done = threading.Event()
    errors: list[Exception] = []

    def other_writer():
        try:
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE counter SET n = n + 10"))
        except Exception as exc:  # pragma: no cover - what the test is about
            errors.append(exc)
        other_done.set()

    with store.writing() as conn:
        # As bot/quality/join.py does: a batch staged in a temporary table, the stored rows read, then written.
        conn.execute(text("CREATE TEMPORARY TABLE stage (k INTEGER)"))
        conn.execute(text("INSERT INTO stage VALUES (1)"))
        seen = conn.execute(text("SELECT n FROM counter")).scalar()
        threading.Thread(target=other_writer).start()
        # It waits for our write lock. With engine.begin() it commits now, and our UPDATE below fails with
        # "database is locked" (or, without the staging, silently overwrites its +10).
        other_done.wait(1.0)
        conn.execute(text("UPDATE counter SET n = :n"), {"n": seen + 1})
    other_done.wait(15)
    assert not errors
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar() == 11  # ours, then the other writer's
    store.dispose()
