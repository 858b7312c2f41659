"""`modelbot new` at a terminal: the questions with their help and defaults, a choice picked with the arrow keys,
a bad answer refused as it is typed (naming the rule) and asked again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bot.registry import load_registry
from tests.scaffold.conftest import Terminal

ENTER, DOWN, CLEAR = "\r", "\x1b[B", "\x15"  # Ctrl-U empties the line (a question's default is pre-filled)


@pytest.mark.timeout(300)
def test_the_questions_are_asked_and_each_answer_checked_as_typed(tmp_path):
    package = tmp_path / "spend"
    term = Terminal([str(Path(sys.executable).parent / "modelbot"), "new", "spend", str(package)], cwd=tmp_path,
                    env=dict(os.environ))
    try:
        term.expect(r"What kind of model is it\?")
        term.send(DOWN + ENTER)  # regression
        term.expect(r"Label column: the column of preprocess's data that the model predicts")
        term.send(CLEAR + "spend" + ENTER)
        term.expect(r"Validation metric")
        term.expect(r"mae \(lower is better\)")  # the choices follow the kind
        term.send(DOWN + ENTER)  # mae
        for question in (r"Promotion", r"Test-set proportion", r"Training: vCPUs", r"Training: memory",
                         r"Serving: vCPUs"):
            term.expect(question)
            term.send(ENTER)
        term.expect(r"Serving: memory")
        term.send(CLEAR + "many" + ENTER)
        term.expect(r"Invalid input")  # not a number: asked again
        term.send(CLEAR + "12" + ENTER)
        term.expect(r"AWS region")
        term.send(ENTER)
        # The suggestion follows the answers just given, and says why (no prices cached here).
        term.expect(r"Suggested: ml\.m5\.xlarge is the smallest general-purpose \(ml\.m5\) instance with at least "
                    r"1 vCPU, 12 GiB")
        term.send(ENTER)
        term.expect(r"Retraining schedule")
        term.send(ENTER)
        term.expect(r"Slack channel ID")
        term.send(CLEAR + "general" + ENTER)
        term.expect(r"Validation error for question 'channel': 'general' is not a Slack channel ID")
        term.send(CLEAR + "C0SPEND" + ENTER)
        term.expect(r"Owners")
        term.send("U0ALICE U0BOB" + ENTER)
        for question in (r"On-call", r"Airflow DAG id", r"SageMaker endpoint name", r"Python module name",
                         r"Artifacts prefix", r"Image repository"):
            term.expect(question)
            term.send(ENTER)
        term.expect(r"Made model package spend")
        assert term.wait() == 0
    finally:
        term.close()
    model = load_registry(package / "models.toml").get("spend")
    assert (model.metric, model.direction, model.channel, model.owners) == ("mae", "minimize", "C0SPEND",
                                                                            ("U0ALICE", "U0BOB"))
    assert (model.memory_gib, model.pipeline.label, model.pipeline.instance_type) == (12, "spend", "ml.m5.xlarge")
