"""`/model pricing`, run the way the router runs it after the ack, with replies captured as Slack gets them."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws
from slack_sdk.errors import SlackApiError

from bot.slack.command_line import parse
from bot.integrations.price_list import Fetched, PriceRecord
from bot.pricing import service as pricing
from bot.store.base import utcnow
from handlers.commands.model import run_after_ack
from handlers.commands.pricing import SUBCOMMANDS
from handlers.commands.spec import Invocation
from sandbox import price_catalog as catalog

SPEC = SUBCOMMANDS[0]


class FakeSlack:
    def __init__(self, fail: bool = False):
        self.uploads: list[dict] = []
        self.fail = fail

    def files_upload_v2(self, **kwargs):
        if self.fail:
            raise SlackApiError("not_in_channel", {"ok": False, "error": "not_in_channel"})
        self.uploads.append(kwargs)
        return {"ok": True}


def run(services, text: str, slack: FakeSlack | None = None) -> dict:
    line = parse(text, flags=SPEC.flags, options=SPEC.options)
    replies: list[dict] = []
    inv = Invocation(services=services, user_id="U0ALICE", channel_id="C0CHURN", line=line, model=None,
                     reply=lambda **kw: replies.append(kw), client=slack or FakeSlack())
    run_after_ack(SPEC, inv)
    assert len(replies) == 1, replies
    return replies[0]


def load(store, region="us-east-1", fetched_at=None):
    records = [
        PriceRecord(region, s.instance_type, s.vcpu, s.memory_gib, s.gpus, None, catalog.price_in(s, region))
        for s in catalog.CATALOG
    ]
    pricing.store_prices(store, Fetched(region=region, source="api", records=records), fetched_at)


def block_text(reply: dict) -> str:
    return json.dumps(reply.get("blocks") or [], ensure_ascii=False)


@pytest.fixture
def sagemaker(monkeypatch):
    """moto in-process, with churn-prod on 2 × ml.m5.xlarge."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        sm.create_model(ModelName="churn-v1", ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
                        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1"})
        sm.create_endpoint_config(EndpointConfigName="churn-c1", ProductionVariants=[{
            "VariantName": "v1", "ModelName": "churn-v1", "InitialInstanceCount": 2,
            "InstanceType": "ml.m5.xlarge", "InitialVariantWeight": 1.0}])
        sm.create_endpoint(EndpointName="churn-prod", EndpointConfigName="churn-c1")
        yield sm


def test_numbers_give_the_five_cheapest_with_hourly_and_monthly_cost(services):
    load(services.store, fetched_at=utcnow() - timedelta(hours=3))
    reply = run(services, "pricing 2 8")
    assert reply["text"].startswith("Cheapest fit for 2 vCPU, 8 GiB in us-east-1: ml.t2.large at $0.111/h ($81.03 a month).")
    assert "Prices fetched 3 hours ago from the AWS Price List API." in reply["text"]
    blocks = reply["blocks"]
    assert blocks[0]["type"] == "header"
    offers = [b for b in blocks if b["type"] == "section" and "fields" in b]
    assert len(offers) == 5
    assert "`ml.t2.large`" in offers[0]["text"]["text"] and "$81.03" in json.dumps(offers[0]["fields"])
    assert blocks[-1]["type"] == "context" and "3 hours ago" in json.dumps(blocks[-1])


def test_region_option_and_missing_prices_say_how_to_fetch_them(services):
    load(services.store, "us-east-1")
    reply = run(services, "pricing 2 8 --region eu-west-1")
    assert "No SageMaker prices are stored for eu-west-1" in reply["text"]
    assert "`modelbot prices refresh --region eu-west-1`" in reply["text"]


def test_unknown_region_is_a_usage_message_with_known_codes(services):
    load(services.store)
    reply = run(services, "pricing 2 8 --region mars-north-1")
    assert reply["text"].startswith(":warning: unknown region `mars-north-1`")
    assert "`us-east-1`" in reply["text"] and "Usage: `/model pricing" in reply["text"]


@pytest.mark.parametrize("text, problem", [
    ("pricing 2", "give both the vCPUs and the memory"),
    ("pricing 2 lots", "memory `lots` is not a number"),
    ("pricing 2 8 1.5", "GPUs `1.5` must be a whole number"),
    ("pricing 0 8", "must be above zero"),
    ("pricing churnn", "Did you mean `churn`?"),
    ("pricing churn extra", "either a model name or numbers"),
    ("pricing fraud", "model `fraud` has no `vcpu` and `memory_gib`"),
    ("pricing <!channel>", "`&lt;!channel&gt;` is neither a number of vCPUs nor a registered model"),
])
def test_bad_input_is_a_usage_message_naming_the_problem(services, text, problem):
    load(services.store)
    reply = run(services, text)
    assert problem in reply["text"]
    assert "Usage: `/model pricing" in reply["text"]
    assert "<!channel>" not in reply["text"]


def test_model_compares_with_the_instance_its_endpoint_runs_on(services, sagemaker):
    load(services.store)
    reply = run(services, "pricing churn")
    # 2 × ml.m5.xlarge at $0.23/h against 2 × ml.t2.large at $0.111/h, 730 h a month.
    expected = ("You pay $335.80 a month on 2 × `ml.m5.xlarge`; `ml.t2.large` fits for $162.06 "
                "(saves $173.74 a month).")
    assert expected in block_text(reply)
    assert expected in reply["text"]
    assert "SageMaker hosting prices for churn" in block_text(reply)


def test_model_already_on_the_cheapest_fit_is_told_so(services, sagemaker):
    sagemaker.create_endpoint_config(EndpointConfigName="churn-c2", ProductionVariants=[{
        "VariantName": "v2", "ModelName": "churn-v1", "InitialInstanceCount": 1,
        "InstanceType": "ml.t2.large", "InitialVariantWeight": 1.0}])
    sagemaker.delete_endpoint(EndpointName="churn-prod")  # moto has no update_endpoint
    sagemaker.create_endpoint(EndpointName="churn-prod", EndpointConfigName="churn-c2")
    load(services.store)
    reply = run(services, "pricing churn")
    assert "You pay $81.03 a month on `ml.t2.large`, already the cheapest instance that fits." in reply["text"]


def test_model_whose_endpoint_is_missing_still_gets_prices(services, sagemaker):
    load(services.store, "eu-west-1")
    reply = run(services, "pricing vision")  # vision-prod does not exist; vision needs 1 GPU in eu-west-1
    assert "Could not read what `vision-prod` runs on now" in reply["text"]
    assert "SageMaker endpoint `vision-prod` was not found in eu-west-1" in reply["text"]
    assert "Cheapest fit for 4 vCPU, 16 GiB, 1 GPU in eu-west-1: ml.g4dn.xlarge" in reply["text"]


def test_nothing_fits_says_so_and_names_the_largest(services):
    load(services.store)
    reply = run(services, "pricing giant")
    assert reply["text"].startswith("No instance in us-east-1 has at least 500 vCPU, 4096 GiB; the largest "
                                    "available is ml.p4d.24xlarge (96 vCPU, 1152 GiB, 8 GPUs)")
    assert ":x: No instance" in block_text(reply)
    assert not [b for b in reply["blocks"] if "fields" in b]


def test_stale_prices_carry_a_warning(services):
    load(services.store, fetched_at=utcnow() - timedelta(days=8, hours=1))
    reply = run(services, "pricing 2 8")
    assert ":warning: These prices are 8 days old; run `modelbot prices refresh --region us-east-1`" in block_text(reply)
    assert "8 days ago" in reply["text"]


def test_fresh_prices_carry_no_warning(services):
    load(services.store, fetched_at=utcnow() - timedelta(days=6))
    assert ":warning:" not in block_text(run(services, "pricing 2 8"))


def test_chart_on_request_is_a_small_png_with_the_pick_described(services):
    load(services.store)
    slack = FakeSlack()
    run(services, "pricing 2 8 --chart", slack)
    [upload] = slack.uploads
    png = upload["file"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 300_000
    assert upload["channel"] == "C0CHURN"
    assert "the cheapest fit, ml.t2.large, is marked" in upload["alt_txt"]


def test_no_chart_unless_asked(services):
    load(services.store)
    slack = FakeSlack()
    run(services, "pricing 2 8", slack)
    assert slack.uploads == []


def test_chart_upload_failure_still_replies_with_prices(services):
    load(services.store)
    reply = run(services, "pricing 2 8 --chart", FakeSlack(fail=True))
    assert "Slack did not take the chart" in block_text(reply)
    assert "ml.t2.large" in reply["text"]


@pytest.mark.parametrize("text, problem", [
    ("pricing", "missing an argument"),
    ("pricing 1 2 3 4", "unexpected `4`"),
    ("pricing 2 8 --zone a", "unknown option `--zone`"),
])
def test_the_router_checks_arity_and_options_before_anything_runs(services, text, problem):
    from bot.slack.command_line import UsageError
    from handlers.commands.model import resolve

    with pytest.raises(UsageError, match=problem):
        resolve(text, services)


def test_help_lists_pricing(services):
    from handlers.commands.help import help_text

    assert "`/model pricing &lt;vcpu&gt; &lt;memory_gib&gt; [gpus]" in help_text()
