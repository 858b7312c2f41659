"""post_chart through slack_sdk against the Slack Web API emulator, and read_diagnostics_csv against moto's S3
(both from tests/conftest.py)."""

from __future__ import annotations

import boto3
import pytest
from slack_sdk import WebClient

from bot.integrations.aws import AwsClients
from bot.integrations.s3 import S3, DiagnosticsReadError
from bot.slack.charts import ALT_TEXT_LIMIT, ChartPostError, post_chart, post_rendered
from charts.diagnostics import diagnostics
from charts.examples import classification_frame


def read_diagnostics_csv(uri: str, region: str):
    return S3(AwsClients()).read_diagnostics_csv(uri, region)


@pytest.fixture
def client(slack):
    return WebClient(token="xoxb-test", base_url=slack.api_url, timeout=5)


def test_chart_lands_in_the_thread_with_title_and_alt_text(slack, client):
    parent = client.chat_postMessage(channel="C0CHURN", text="churn run 42")
    chart = diagnostics(classification_frame(500), "churn", "v42")

    post_rendered(client, "C0CHURN", parent["ts"], chart)

    [stored] = slack.files
    assert (stored.channel, stored.thread_ts) == ("C0CHURN", parent["ts"])
    assert stored.title == chart.title and stored.filename == "diagnostics-churn-v42.png"
    assert stored.alt_txt == chart.alt_text and "ROC AUC" in stored.alt_txt
    assert stored.data == chart.png
    assert slack.thread("C0CHURN", parent["ts"])[-1]["files"][0]["id"] == stored.id


def test_long_alt_text_is_cut_to_slacks_limit(slack, client):
    post_chart(client, "C1", None, b"\x89PNG\r\n\x1a\n" + b"0" * 10, "t", "x" * 1500, "a.png")
    [stored] = slack.files
    assert len(stored.alt_txt) == ALT_TEXT_LIMIT and stored.alt_txt.endswith("…")


def test_slack_refusal_is_named(slack, client):
    slack.error_next("files.getUploadURLExternal", "channel_not_found")
    with pytest.raises(ChartPostError, match=r"Slack refused the chart \"ROC\" for thread 1.2 in channel C9 "
                                             r"\(channel_not_found\); it was not posted"):
        post_chart(client, "C9", "1.2", b"png", "ROC", "alt", "a.png")
    assert not [f for f in slack.files if f.completed]


def test_unreachable_slack_is_named():
    dead = WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/api/", timeout=2)
    with pytest.raises(ChartPostError, match="Slack could not be reached"):
        post_chart(dead, "C1", "1.2", b"png", "ROC", "alt", "a.png")


@pytest.fixture
def s3(aws):
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws)
    s3.create_bucket(Bucket="ml-eval")
    return s3


def test_reads_the_diagnostics_csv(s3):
    s3.put_object(Bucket="ml-eval", Key="churn/run1/diag.csv", Body=b"id,y_true,y_pred\n1,0,0.2\n2,1,0.9\n3,1,\n")
    frame = read_diagnostics_csv("s3://ml-eval/churn/run1/diag.csv", "us-east-1")
    assert list(frame.columns) == ["y_true", "y_pred"]
    assert frame["y_true"].tolist() == [0, 1, 1] and frame["y_pred"].isna().tolist() == [False, False, True]
    assert "1 row(s) without both values left out" in diagnostics(frame, "churn").alt_text


def test_missing_object_names_s3_and_the_uri(s3):
    with pytest.raises(DiagnosticsReadError, match=r"S3 did not return the diagnostics CSV s3://ml-eval/nope.csv "
                                                   r"in us-east-1 \(NoSuchKey\)"):
        read_diagnostics_csv("s3://ml-eval/nope.csv", "us-east-1")


def test_wrong_columns_are_named(s3):
    s3.put_object(Bucket="ml-eval", Key="d.csv", Body=b"label,score\n1,0.3\n")
    with pytest.raises(DiagnosticsReadError, match=r"s3://ml-eval/d.csv lacks column\(s\) y_true, y_pred "
                                                   r"\(found: label, score\)"):
        read_diagnostics_csv("s3://ml-eval/d.csv", "us-east-1")


def test_empty_object_is_not_a_csv(s3):
    s3.put_object(Bucket="ml-eval", Key="empty.csv", Body=b"")
    with pytest.raises(DiagnosticsReadError, match="s3://ml-eval/empty.csv is not a readable CSV"):
        read_diagnostics_csv("s3://ml-eval/empty.csv", "us-east-1")


@pytest.mark.parametrize("uri", ["", "https://ml-eval/x.csv", "s3://ml-eval", "s3:///x.csv"])
def test_not_an_s3_uri(uri):
    with pytest.raises(DiagnosticsReadError, match="is not an s3://bucket/key URI"):
        read_diagnostics_csv(uri, "us-east-1")
