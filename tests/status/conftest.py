"""Status fixtures: registries of many models, SageMaker through the proxy (to count and fault calls), and a
way to ask `/model status` exactly as the router does for the ack."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.status.tables import WORKER_PASS, EndpointSnapshot, SnapshotPass
from bot.slack.command_line import UsageError
from handlers.commands.model import resolve, usage_reply
from handlers.commands.spec import Invocation
from tests.conftest import MODELS_TOML

HEADER = MODELS_TOML.split("[models.churn]")[0]


def registry_toml(names: list[str]) -> str:
    """Every model owned by U0ALICE, endpoint `<name>-prod`."""
    body = [HEADER]
    for name in names:
        body.append(f'[models."{name}"]\ndag_id = "{name}_lifecycle"\nendpoint = "{name}-prod"\n'
                    f'channel = "C0CHURN"\nmetric = "auc"\ndirection = "maximize"\nowners = ["U0ALICE"]\n')
    return "\n".join(body)


@pytest.fixture
def status_aws(proxied_aws):
    return proxied_aws


@pytest.fixture
def services_for(make_services, tmp_path):
    """services_for(names) -> in-process Services whose registry holds exactly these models."""

    def make(names: list[str], **settings):
        path = tmp_path / f"models-{len(names)}.toml"
        path.write_text(registry_toml(names))
        return make_services(MODELS_FILE=str(path), **settings)

    return make


def ack(services, text: str, user: str = "U0ALICE") -> dict:
    """What the router puts in the ack for `/model <text>` (the same resolve and quick part)."""
    try:
        spec, line, model = resolve(text, services)
    except UsageError as exc:
        return {"follow_up": False, **usage_reply(str(exc), getattr(exc, "spec", None))}
    inv = Invocation(services=services, user_id=user, channel_id="C0CHURN", line=line, model=model,
                     reply=lambda **kw: None, client=services.slack)
    try:
        first = spec.quick(inv)
    except UsageError as exc:
        return {"follow_up": False, **usage_reply(str(exc), spec)}
    return {"follow_up": first.follow_up, **first.reply}


def seed_snapshot(services, rows: dict[str, dict], *, pass_age: float = 5.0, interval: float = 30.0,
                  now: datetime | None = None) -> None:
    """The worker's output, as a pass leaves it: rows {model: {"variants": ..., "age": s, ...}}."""
    now = now or datetime.now(timezone.utc)
    with services.store.session() as s:
        for name, spec in rows.items():
            at = now - timedelta(seconds=spec.get("age", 5.0))
            s.add(EndpointSnapshot(
                model=name, endpoint=spec.get("endpoint", f"{name}-prod"), region="us-east-1",
                status=spec.get("status", "InService"), config_name=f"{name}-config-1",
                variants=spec.get("variants", [{"name": "blue", "weight": 1.0, "desired_weight": None,
                                                "instance_type": "ml.m5.large", "instance_count": 1}]),
                read_at=at, ok_at=None if spec.get("never_ok") else at, error=spec.get("error"), source="worker"))
        s.add(SnapshotPass(name=WORKER_PASS, started_at=now - timedelta(seconds=pass_age + 1),
                           finished_at=now - timedelta(seconds=pass_age), seconds=1.0, models=len(rows), calls=len(rows),
                           throttled=0, errors=0, concurrency=8, interval_seconds=interval, passes=1))


def block_texts(reply: dict) -> str:
    out = []
    for b in reply.get("blocks") or []:
        if b["type"] in ("section", "header"):
            out.append(b["text"]["text"])
        elif b["type"] == "context":
            out.extend(e["text"] for e in b["elements"])
    return "\n".join(out)


def model_order(reply: dict) -> list[str]:
    import re

    return re.findall(r":(?:red|large_blue|white)_circle: \*([^*]+)\*", block_texts(reply))


def within_slack_limits(reply: dict) -> list[str]:
    """Every limit Slack enforces on an ephemeral reply; the problems found (empty: it would be accepted)."""
    problems = []
    blocks = reply.get("blocks") or []
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks")
    if len(reply.get("text", "")) > 40000:
        problems.append("text over 40,000")
    for b in blocks:
        if b["type"] == "header" and len(b["text"]["text"]) > 150:
            problems.append("header over 150")
        if b["type"] == "section" and len(b["text"]["text"]) > 3000:
            problems.append(f"section of {len(b['text']['text'])}")
        if b["type"] == "context":
            if len(b["elements"]) > 10:
                problems.append("context with more than 10 elements")
            problems.extend(f"context text of {len(e['text'])}" for e in b["elements"] if len(e["text"]) > 3000)
    return problems
