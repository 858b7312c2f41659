"""Fuzz: hypothesis-generated `/model` texts, button payloads and mentions (forged values, other models' ids,
huge and odd text, unicode, `<!channel>` / `<!here>` / `<@U..>` injections), sent signed through the HTTP path
to the real `python -m bot`, by a user who is neither an owner nor an admin.

Checked after every batch: no 5xx, no unhandled exception in the app's log, no state change (no audit row but
"denied", endpoint weights as they were, no rollout, the page untouched), and no `<!channel>`, `<!here>` or
`<!everyone>` in anything that reached the Slack emulator (Web API calls, response_url posts, HTTP answers).

MODELBOT_FUZZ_EXAMPLES sets the number of examples per test (200 by default, as `make test` runs it).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.config import Settings
from bot.paging import service as pager
from bot.paging.tables import OPEN, Page
from bot.rollouts.tables import Rollout
from bot.services import Services
from bot.store import Store
from bot.store.foundation import AuditEntry
from tests.endpoints import create_endpoint
from tests.harness import AppProcess, app_env, sign
from tests.rollout.conftest import weights

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("MODELBOT_FUZZ_EXAMPLES", "200"))
INTRUDER = "U0MALLORY"  # in the workspace, owns nothing, not an admin, not on call
BROADCAST = re.compile(r"<!(channel|here|everyone)\b")
INJECTIONS = ["<!channel>", "<!here>", "<!everyone>", "<!here|here>", "<@U0ADMIN>", "<@U0ALICE|alice>",
              "<#C0ALERTS>", "<!subteam^S0ONCALL>", "&lt;!channel&gt;", "<https://evil.example|click>", "`", "*",
              "```", "\u202e", "\u200b", "🚀", "ﷺ", "\\", "'", '"', "%s", "{0}", "${x}", "\n", "\t"]
WORDS = ["churn", "fraud", "nosuch", "--force", "--variant", "--region", "v1", "v2", "v41", "v42", "help",
         "status", "promote", "rollback", "pause", "resume", "retrain", "pricing", "key=value", "2", "8", "-1",
         "1e309", "nan", "--", "-", "us-east-1"]
SUBCOMMANDS = ["promote", "rollback", "pause", "resume", "retrain", "status", "help", "pricing", ""]
ACTIONS = ["rollout_force_confirm", "rollout_rollback_confirm", "rollout_continue", "rollout_paused_rollback",
           "page_acknowledge", "page_resolve", "nosuch_action"]

odd_text = st.text(max_size=40)
word = st.one_of(st.sampled_from(WORDS), st.sampled_from(INJECTIONS), odd_text)
command_text = st.one_of(
    st.tuples(st.sampled_from(SUBCOMMANDS), st.lists(word, max_size=8)).map(lambda t: " ".join([t[0], *t[1]])),
    st.text(max_size=300),
    st.tuples(st.sampled_from(SUBCOMMANDS), st.sampled_from(["churn", "fraud"]),
              st.text(min_size=3000, max_size=12000)).map(" ".join),
)
any_id = st.one_of(st.none(), st.integers(min_value=-2**63, max_value=2**63), st.sampled_from([0, 1, 2, 3, 999]),
                   st.text(max_size=20), st.booleans(), st.floats(allow_nan=True))
forged_value = st.fixed_dictionaries({}, optional={
    "model": st.one_of(st.sampled_from(["churn", "fraud", "nosuch", ""]), odd_text, st.integers()),
    "rollout_id": any_id,
    "candidate": st.one_of(st.sampled_from(["v1", "v2", "v42"]), odd_text, st.none()),
    "variant": st.one_of(st.sampled_from(["v1", "v2"]), odd_text, st.none()),
    "active": st.one_of(st.booleans(), st.none(), odd_text),
    "expires": st.one_of(st.just(4_102_444_800), st.integers(), st.floats(allow_nan=True), odd_text, st.none()),
    "reason": st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=5000)),
})
button_value = st.one_of(forged_value.map(json.dumps), st.text(max_size=2500), st.sampled_from(["1", "2", "-1", "[]"]))
mention_text = st.lists(st.one_of(word, st.sampled_from(["<@U0MODELBOT>"])), max_size=10).map(" ".join)


@pytest.fixture
def fuzz_app(tmp_path, moto_url, slack, sagemaker_proxy, rollout_aws, database_url, models_file):
    env = app_env(slack=slack, moto_url=moto_url, database_url=database_url, models_file=models_file,
                  AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url)
    create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0})
    create_endpoint("fraud-prod", {"v1": 1.0, "v2": 0.0})
    app = AppProcess(env, tmp_path / "app.log").start(timeout=90)
    app.database_url = database_url
    app.store = Store(database_url)
    yield app
    app.store.dispose()
    app.stop()


class Checker:
    """Sends one fuzzed request and checks what a user (or an attacker) would notice."""

    def __init__(self, app, slack):
        self.app, self.slack, self.sent = app, slack, 0
        self.page_id = self._open_page()
        self.answers: list[str] = []

    def _open_page(self) -> int:
        services = Services.from_settings(Settings(_env_file=None, **{
            k: v for k, v in self.app.env.items() if k in ("SLACK_BOT_TOKEN", "SLACK_API_URL", "DATABASE_URL",
                                                          "MODELS_FILE")}), migrate=False)
        try:
            return pager.open_page(services, kind="rollback", dedup_key="modelbot-rollout-1", model_name="churn",
                                   rollout_id=1, title="*churn* was rolled back", reason="fuzz target")
        finally:
            services.store.dispose()

    def check_response(self, response: requests.Response) -> None:
        self.sent += 1
        assert response.status_code < 500, (response.status_code, response.text[:500], self.app.log()[-3000:])
        self.answers.append(response.text)

    def command(self, text: str) -> None:
        response, _ = self.app.command(text, slack=self.slack, user_id=INTRUDER, channel_id="C0CHURN")
        self.check_response(response)

    def click(self, action_id: str, value: str) -> None:
        payload = {
            "type": "block_actions", "user": {"id": INTRUDER, "username": "mallory", "team_id": "T0EMULATOR"},
            "api_app_id": "A0MODELBOT", "token": "deprecated", "trigger_id": f"{time.time_ns()}.trigger",
            "container": {"type": "message", "message_ts": "1.0", "channel_id": "C0CHURN", "is_ephemeral": True},
            "team": {"id": "T0EMULATOR", "domain": "example"}, "channel": {"id": "C0CHURN", "name": "ml"},
            "response_url": self.slack.response_url(f"fz{time.monotonic_ns()}"), "state": {"values": {}},
            "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value,
                         "text": {"type": "plain_text", "text": "x"}, "action_ts": f"{time.time():.6f}"}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        self.check_response(self.app.post(body, sign(body), "application/x-www-form-urlencoded"))

    def mention(self, text: str, in_thread: bool) -> None:
        event = {"type": "app_mention", "user": INTRUDER, "text": text, "ts": f"{time.time():.6f}",
                 "channel": "C0CHURN", "event_ts": f"{time.time():.6f}"}
        if in_thread:
            event["thread_ts"] = "1700000000.000100"
        payload = {"token": "deprecated", "team_id": "T0EMULATOR", "api_app_id": "A0MODELBOT", "event": event,
                   "type": "event_callback", "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time())}
        self.check_response(self.app.event(payload))

    def invariants(self, settle: float = 0.0) -> None:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            time.sleep(0.5)
        log = self.app.log()
        assert "Traceback" not in log and "listener failed" not in log, log[-5000:]
        with self.app.store.session() as s:
            changes = [(a.user_id, a.action, a.outcome) for a in s.scalars(select(AuditEntry))
                       if a.outcome != "denied"]
            rollouts = s.scalars(select(Rollout)).all()
            page = s.get(Page, self.page_id)
        assert changes == [], changes
        assert rollouts == []
        assert page.state == OPEN and page.acknowledged_by is None
        assert weights("churn-prod") == {"v41": 1.0, "v42": 0.0}
        assert weights("fraud-prod") == {"v1": 1.0, "v2": 0.0}
        seen = [json.dumps(c.args, ensure_ascii=False) for c in self.slack.calls]
        seen += [json.dumps(r.body, ensure_ascii=False) for r in self.slack.responses]
        seen += self.answers
        leaks = [s[:300] for s in seen if BROADCAST.search(s)]
        assert leaks == [], leaks


def _settings():
    return settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))


def test_fuzzed_commands_clicks_and_mentions_change_nothing_and_leak_nothing(fuzz_app, slack):
    checker = Checker(fuzz_app, slack)
    started = time.monotonic()

    @_settings()
    @given(kind=st.sampled_from(["command", "command", "click", "click", "mention"]), text=command_text,
           action=st.sampled_from(ACTIONS), value=button_value, mention=mention_text, in_thread=st.booleans())
    def one(kind, text, action, value, mention, in_thread):
        if kind == "command":
            checker.command(text)
        elif kind == "click":
            checker.click(action, value)
        else:
            checker.mention(mention, in_thread)
        if checker.sent % 50 == 0:
            checker.invariants()
        if checker.sent % 100 == 0:
            print(f"fuzz: {checker.sent} requests, {time.monotonic() - started:.0f}s", flush=True)

    # Found by this test on PostgreSQL: a rollout id past SQL's integer range was sent to the database, which
    # refused it with a traceback in the log. Such ids must read as "no such rollout".
    for action in ACTIONS:
        for rollout_id in (-10**12, 2**31, 10**12):
            checker.click(action, json.dumps({"rollout_id": rollout_id}))
    one()
    # Whatever was still running after its ack (deferred commands, clicks in the listener pool) finishes.
    checker.invariants(settle=5.0)
    print(f"\nfuzz: {checker.sent} requests in {time.monotonic() - started:.1f}s, "
          f"{len(slack.calls)} Slack calls, {len(slack.responses)} response_url posts")
