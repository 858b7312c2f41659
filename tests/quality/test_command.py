"""`/model quality` (the numbers in the ack, the chart after it), its bad inputs, and `/model status` marking a
model whose quality decayed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.config import ConfigError

from bot.quality import measure
from bot.quality.tables import QualityEpisode
from bot.status import board as status_board
from handlers.commands.model import resolve
from handlers.commands.quality import run_quality
from handlers.commands.spec import Invocation
from tests.quality.conftest import TODAY
from tests.quality.test_references import add_pairs, day_of_pairs
from tests.status.conftest import ack


def test_the_reply_and_the_chart_in_a_direct_message(services, slack):
    for k in range(3):
        add_pairs(services, "v41", TODAY - timedelta(days=3 - k), day_of_pairs(k))
    measure.recompute_days(services, services.registry.get("churn"))
    first = ack(services, "quality churn --days 7")
    assert first["follow_up"] is True
    table = "".join(b["text"]["text"] for b in first["blocks"] if b["type"] == "section")
    for k in range(3):
        assert f"{TODAY - timedelta(days=3 - k):%Y-%m-%d} v41" in table
    spec, line, model = resolve("quality churn --days 7", services)
    replies = []
    inv = Invocation(services=services, user_id="U0ALICE", channel_id="C0CHURN", line=line, model=model,
                     reply=lambda **kw: replies.append(kw), client=services.slack)
    run_quality(inv)
    [reply] = replies
    assert ":bar_chart: The chart is in a direct message to you." in reply["text"]
    [upload] = slack.calls_to("files.completeUploadExternal")
    dm = upload.args.get("channel_id")
    assert dm and dm != "C0CHURN"
    [message] = slack.messages(dm)
    assert message["files"][0]["name"] == "quality-churn.png"


def test_bad_requests_say_what_was_wrong(services):
    for text, words in [("quality churn --days 0", "--days needs a whole number of days from 1 to 365"),
                        ("quality churn --days week", "not `week`"),
                        ("quality", "missing the model name"),
                        ("quality churm", "unknown model `churm`. Did you mean `churn`?")]:
        assert words in ack(services, text)["text"], text
    fraud = ack(services, "quality fraud")
    assert fraud["follow_up"] is False
    assert "*fraud* is not measured: the models file has no `[models.fraud.quality]` table" in fraud["text"]


def test_status_marks_a_model_whose_quality_decayed(services):
    with services.store.session() as s:
        s.add(QualityEpisode(model="churn", variant="v41", open_key="churn/v41", metric="auc", direction="maximize",
                             value=0.7, reference=0.9, labels=300, tolerance=0.05, window_start=TODAY, window_end=TODAY))
    with services.store.session() as s:
        board = status_board.build(s, services.registry.names(), interval=30.0)
    churn = next(line for line in board.lines if line.name == "churn")
    assert churn.category == "attention" and "*quality decayed* (`/model quality churn`)" in churn.text
    assert board.counts["attention"] == 1


def test_the_worker_job_measures_what_is_due(aws, services, monkeypatch):
    from jobs import quality_monitor

    monkeypatch.setenv(quality_monitor.INTERVAL_ENV, "3600")
    first = quality_monitor.run_once(services)
    assert first.startswith("churn: 0 files, 0 lines read")
    assert quality_monitor.run_once(services) == "1 models measured within the last 3600 s"
    monkeypatch.setenv(quality_monitor.INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match="MODELBOT_QUALITY_INTERVAL_SECONDS='soon' is not a number of seconds"):
        quality_monitor.run_once(services)
