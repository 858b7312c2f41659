"""`/model cost` and the cost in `/model status`, on moto (SageMaker, Application Auto Scaling, CloudWatch), the
Slack emulator and both databases: every model largest first with the total and the candidates' part, a missing
price shown as unknown, one model's instance hours from the snapshot history, right-sizing on given utilization
data, the chart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3

from bot.cost import history
from bot.status import board as status_board
from bot.status import messages as status_messages
from bot.status import service as status_service
from handlers.commands.cost import run_cost
from handlers.commands.model import resolve
from handlers.commands.spec import Invocation
from tests.scaling.conftest import REGION, create_endpoint, worker_pass
from tests.status.conftest import ack


def put_utilization(endpoint: str, variant: str, *, cpu: float, memory: float, hours: int) -> None:
    """Five-minute datapoints of the instances' CPU and memory use, as SageMaker publishes them."""
    cw = boto3.client("cloudwatch", region_name=REGION)
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    data = []
    for k in range(hours * 12):
        at = now - timedelta(minutes=5 * (k + 1))
        wobble = (k % 7) / 7  # the p95 is taken of these, not of a constant
        data += [{"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": at, "Value": cpu * (0.8 + 0.2 * wobble)},
                 {"MetricName": "MemoryUtilization", "Dimensions": dims, "Timestamp": at, "Value": memory}]
    for start in range(0, len(data), 500):
        cw.put_metric_data(Namespace="/aws/sagemaker/Endpoints", MetricData=data[start:start + 500])


def seed(services) -> None:
    """churn: 2 x ml.m5.xlarge for the last 3 days (1 the day before), a candidate on 1 x ml.m5.large;
    fraud: a type the price table does not have."""
    create_endpoint("churn-prod", {"v41": (0.9, 2), "v42": (0.1, 1)}, instance_type="ml.m5.xlarge")
    create_endpoint("fraud-prod", {"v1": (1.0, 1)}, instance_type="ml.r5.large")
    now = datetime.now(timezone.utc)
    with services.store.session() as s:
        history.record(s, [history.Seen("churn", "churn-prod", REGION, (
            {"name": "v41", "weight": 1.0, "instance_type": "ml.m5.xlarge", "instance_count": 1},))],
            now - timedelta(days=4))
        history.record(s, [history.Seen("churn", "churn-prod", REGION, (
            {"name": "v41", "weight": 1.0, "instance_type": "ml.m5.xlarge", "instance_count": 2},))],
            now - timedelta(days=3))
    with services.store.session() as s:
        from bot.rollouts.tables import Rollout
        s.add(Rollout(model="churn", active_model="churn", source="slack", endpoint="churn-prod", region=REGION,
                      stable_variant="v41", candidate_variant="v42", steps=[50.0, 100.0], state="progressing",
                      step_index=0, target_weights={"v41": 0.9, "v42": 0.1}, version=1))
    worker_pass(services)  # the snapshot (v42 appears, counts as the endpoint has them) and the scaling


def test_every_model_largest_first_with_the_total_and_what_candidates_cost_and_status_shows_it(services):
    seed(services)
    reply = ack(services, "cost")
    assert reply["follow_up"] is False
    text = reply["text"]
    # churn: 3 x ml.m5.xlarge ($0.23 an hour) x 730 hours = $503.70, a third of it the candidate's
    assert "1. *churn* $503.70/month" in text
    assert "Total: $503.70/month — candidates $167.90, baking $0" in text
    assert ("2. *fraud* cost unknown — `v1` 1 × `ml.r5.large`: cost unknown, `ml.r5.large` has no on-demand "
            "hosting price in us-east-1") in text
    assert "+1 variant of unknown cost, not in the total" in text
    assert "a month is 730 hours" in text and "$0/month" not in text.split("fraud")[1]
    for bad, words in [("cost churn --days 0", "--days needs a whole number of days from 1 to 365"),
                       ("cost churm", "unknown model `churm`. Did you mean `churn`?"),
                       ("cost churn fraud", "unexpected `fraud`")]:
        assert words in ack(services, bad)["text"], bad

    # /model status: the board's line and the single-model view
    with services.store.session() as s:
        board = status_board.build(s, services.registry.names(), interval=30.0)
    churn = next(line for line in board.lines if line.name == "churn")
    assert "instances 3 (min 1, max 6, scale-in suspended) · $503.70/month" in churn.text
    fraud = next(line for line in board.lines if line.name == "fraud")
    assert "instances 1 · cost unknown: `ml.r5.large` has no on-demand hosting price" in fraud.text
    text, _ = status_messages.render_statuses([status_service.from_snapshot(services, services.registry.get("churn"))],
                                              detail=True)
    assert ("Instances: `v41` 2 × `ml.m5.xlarge` $335.80/month (min 1, max 6, scale-in suspended) · `v42` candidate "
            "1 × `ml.m5.xlarge` $167.90/month (min 1, max 6, scale-in suspended); total $503.70/month") in text


def test_one_model_instance_hours_right_sizing_and_the_chart(services, slack):
    seed(services)
    put_utilization("churn-prod", "v41", cpu=60, memory=20, hours=30)
    first = ack(services, "cost churn --days 7")
    assert first["follow_up"] is True
    # 1 instance for a day, then 2 for 3 days: 24 + 144 instance hours of ml.m5.xlarge ($0.23), plus v42's minutes.
    assert "*Last 7 days* (history since" in first["text"]
    assert "`v41` `ml.m5.xlarge` 168 instance hours, $38.64" in first["text"]
    spec, line, model = resolve("cost churn --days 7", services)
    replies = []
    run_cost(Invocation(services=services, user_id="U0ALICE", channel_id="C0CHURN", line=line, model=model,
                        reply=lambda **kw: replies.append(kw), client=services.slack))
    [reply] = replies
    # p95 CPU ~60% of one core, memory 20% of 16 GiB = 3.2 GiB: ml.m5.large (2 vCPU, 8 GiB) carries it with 30%
    # headroom, at half the price: 2 x (0.23 - 0.115) x 730.
    assert "`v41` (2 × `ml.m5.xlarge`) could save *$167.90/month* on `ml.m5.large`" in reply["text"]
    assert "memory p95 20% (3.2 of 16 GiB)" in reply["text"] and "five-minute maxima" in reply["text"]
    assert "`v42` (1 × `ml.m5.xlarge`) not sized: only 0 five-minute datapoints" in reply["text"]
    assert ":bar_chart: The instance chart is in a direct message to you." in reply["text"]
    [upload] = slack.calls_to("files.completeUploadExternal")
    [message] = slack.messages(upload.args.get("channel_id"))
    assert message["files"][0]["name"] == "cost-churn.png"
