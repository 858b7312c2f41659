"""What the judgement reads back from rollout_events, on SQLite and PostgreSQL: every earlier tick's counts, each
under the step they were counted in (a shift row is written under the step it enters, with the counts of the
step it leaves), and a replay of those rows gives the judgement the controller made."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from bot.registry import RolloutSettings
from bot.rollouts.judgement import Counts, judge
from bot.rollouts.judgement_history import earlier_ticks
from bot.rollouts.plans import event_row
from bot.rollouts.tables import Rollout, RolloutEvent

SETTINGS = RolloutSettings()
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def rollout(s, model: str) -> Rollout:
    r = Rollout(model=model, active_model=model, source="slack", endpoint=f"{model}-prod", region="us-east-1",
                stable_variant="v1", candidate_variant="v2", steps=[10, 25, 50, 100], state="progressing",
                step_index=0, step_started_at=T0, version=1)
    s.add(r)
    s.flush()
    return r


def tick(k: int, share: float, cand_rate: float = 0.006) -> tuple[Counts, Counts]:
    ns, nc = int(10_000 * k * (1 - share)), int(10_000 * k * share)
    return Counts(ns, int(ns * 0.005), int(ns * 0.002)), Counts(nc, int(nc * cand_rate), int(nc * 0.002))


def write(s, r: Rollout, kind: str, step: int, at: datetime, counts=None, decision=None) -> None:
    stable, candidate = counts if counts else (None, None)
    r.step_index = step
    s.add(RolloutEvent(rollout_id=r.id, **event_row(r, kind, at, state=r.state, step_index=step, decision=decision,
                                                    stable=stable, candidate=candidate)))


def test_every_earlier_tick_is_read_back_under_its_own_step(store):
    with store.session() as s:
        a, b = rollout(s, "churn"), rollout(s, "fraud")
        write(s, a, "start", 0, T0)
        first = [tick(k, 0.1) for k in range(1, 4)]
        for k, c in enumerate(first):
            write(s, a, "judgement", 0, T0 + timedelta(minutes=k), c, judge(*c, SETTINGS, k))
        write(s, b, "judgement", 0, T0, tick(1, 0.5), judge(*tick(1, 0.5), SETTINGS, 1))  # another rollout
        leaving = tick(4, 0.1)
        write(s, a, "shift", 1, T0 + timedelta(minutes=5), leaving, judge(*leaving, SETTINGS, 5))
        second = [tick(k, 0.25) for k in range(1, 3)]
        for k, c in enumerate(second):
            write(s, a, "judgement", 1, T0 + timedelta(minutes=6 + k), c, judge(*c, SETTINGS, k, step=1))
        write(s, a, "pause", 1, T0 + timedelta(minutes=9))  # by hand: no counts
        ids = (a.id, b.id)
    got = earlier_ticks(SimpleNamespace(store=store), ids)
    assert [(h.step, h.stable, h.candidate) for h in got[ids[0]]] == [
        (0, tuple(s for s, _ in first + [leaving]), tuple(c for _, c in first + [leaving])),
        (1, tuple(s for s, _ in second), tuple(c for _, c in second)),
    ]
    assert [h.step for h in got[ids[1]]] == [0] and len(got[ids[1]][0].stable) == 1
    assert earlier_ticks(SimpleNamespace(store=store), []) == {}


def test_replaying_the_rows_gives_the_judgement_that_was_made(store):
    """What the thread said at a tick can be recomputed from the rows: the controller judged on exactly them."""
    made = []
    with store.session() as s:
        r = rollout(s, "churn")
        for step, share in ((0, 0.1), (1, 0.25)):
            path = []
            for k in range(1, 8):
                now = tick(k, share, cand_rate=0.008)
                hist = earlier_ticks(SimpleNamespace(store=store), [r.id]).get(r.id, ())
                d = judge(*now, SETTINGS, k, step=step, steps=SETTINGS.steps, history=hist)
                made.append((step, d))
                write(s, r, "judgement", step, T0 + timedelta(minutes=10 * step + k), now, d)
                s.commit()
                path.append(now)
        rid = r.id
    hist = earlier_ticks(SimpleNamespace(store=store), [rid])[rid]
    last_step, last = made[-1]
    prior = [h if h.step != 1 else type(h)(1, h.stable[:-1], h.candidate[:-1]) for h in hist]
    replay = judge(hist[-1].stable[-1], hist[-1].candidate[-1], SETTINGS, 7, step=1, steps=SETTINGS.steps,
                   history=prior)
    assert replay.evidence == last.evidence
    # and the second step's evidence carries the first step's: it is not the same as judging step 2 alone
    alone = judge(hist[-1].stable[-1], hist[-1].candidate[-1], SETTINGS, 7, step=1, steps=SETTINGS.steps,
                  history=[h for h in prior if h.step == 1])
    assert alone.evidence.statistic != last.evidence.statistic
