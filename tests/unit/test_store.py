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
