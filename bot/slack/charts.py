"""Getting charts into Slack threads. (The diagnostics CSV a chart reads from S3: bot/integrations/s3.py.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError, SlackClientError

if TYPE_CHECKING:  # posting a chart should not pay for importing matplotlib
    from charts.style import RenderedChart

ALT_TEXT_LIMIT = 1000  # Slack answers alt_txt_too_large above this


class ChartPostError(RuntimeError):
    """Slack did not take a chart; the message says which chart, where, and why."""


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
