"""Getting charts into Slack threads, and the one input a chart reads from outside: the diagnostics CSV in S3."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.integrations import aws

if TYPE_CHECKING:  # reading a CSV should not pay for importing matplotlib
    from charts.style import RenderedChart

ALT_TEXT_LIMIT = 1000  # Slack answers alt_txt_too_large above this
DIAGNOSTICS_COLUMNS = ("y_true", "y_pred")
# An evaluation set is at most a few million rows; past this the CSV is not what the contract describes, and
# reading it would only risk the worker's memory.
MAX_DIAGNOSTICS_BYTES = 200 * 1024 * 1024


class ChartPostError(RuntimeError):
    """Slack did not take a chart; the message says which chart, where, and why."""


class DiagnosticsReadError(RuntimeError):
    """The diagnostics CSV could not be read from S3 or is not in the expected shape."""


def post_chart(
    client,
    channel: str,
    thread_ts: str | None,
    png: bytes,
    title: str,
    alt_text: str,
    filename: str,
):
    """Upload one PNG into a thread (channel ID + thread_ts) with its title and alt text.

    Returns Slack's completeUploadExternal response. Raises ChartPostError naming Slack when the upload fails;
    nothing is posted then.
    """
    alt = alt_text if len(alt_text) <= ALT_TEXT_LIMIT else alt_text[: ALT_TEXT_LIMIT - 1] + "…"
    where = f"thread {thread_ts} in channel {channel}" if thread_ts else f"channel {channel}"
    try:
        return client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            file=png,
            filename=filename,
            title=title,
            alt_txt=alt,
        )
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown error") if exc.response is not None else str(exc)
        raise ChartPostError(f"Slack refused the chart \"{title}\" for {where} ({error}); it was not posted") from exc
    except (SlackClientError, OSError) as exc:
        raise ChartPostError(
            f"Slack could not be reached to post the chart \"{title}\" to {where} ({type(exc).__name__}: {exc}); "
            "it was not posted"
        ) from exc


def post_rendered(client, channel: str, thread_ts: str | None, chart: "RenderedChart"):
    return post_chart(client, channel, thread_ts, chart.png, chart.title, chart.alt_text, chart.filename)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri or "")
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key:
        raise DiagnosticsReadError(f"diagnostics_uri {uri!r} is not an s3://bucket/key URI; no diagnostic plots")
    return parsed.netloc, key


def read_diagnostics_csv(uri: str, region: str) -> pd.DataFrame:
    """The evaluate task's diagnostics CSV (columns y_true, y_pred; others ignored) as a DataFrame.

    Raises DiagnosticsReadError naming S3 and the URI when the object cannot be read or lacks the columns.
    """
    bucket, key = parse_s3_uri(uri)
    s3 = aws.client("s3", region)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        size = obj.get("ContentLength") or 0
        if size > MAX_DIAGNOSTICS_BYTES:
            obj["Body"].close()
            raise DiagnosticsReadError(
                f"S3 object {uri} is {size / 1024 / 1024:.0f} MB, over the {MAX_DIAGNOSTICS_BYTES // 1024 // 1024} "
                "MB read for diagnostics; no diagnostic plots"
            )
        body = obj["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise DiagnosticsReadError(
            f"S3 did not return the diagnostics CSV {uri} in {region} ({code}); no diagnostic plots") from exc
    except BotoCoreError as exc:
        raise DiagnosticsReadError(
            f"S3 could not be reached for the diagnostics CSV {uri} in {region} ({exc}); no diagnostic plots"
        ) from exc
    try:
        frame = pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DiagnosticsReadError(f"S3 object {uri} is not a readable CSV ({exc}); no diagnostic plots") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in DIAGNOSTICS_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(frame.columns) or "none"
        raise DiagnosticsReadError(
            f"S3 object {uri} lacks column(s) {', '.join(missing)} (found: {found}); no diagnostic plots")
    return frame[list(DIAGNOSTICS_COLUMNS)]
