"""S3: the one object a chart reads from outside, the evaluate task's diagnostics CSV (boto3)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from bot.errors import ExternalError
from bot.integrations import aws

if TYPE_CHECKING:  # pandas is imported when a CSV is read, not when this module is
    import pandas as pd

DIAGNOSTICS_COLUMNS = ("y_true", "y_pred")
# An evaluation set is at most a few million rows; past this the CSV is not what the contract describes, and
# reading it would only risk the worker's memory.
MAX_DIAGNOSTICS_BYTES = 200 * 1024 * 1024


class DiagnosticsReadError(ExternalError):
    """The diagnostics CSV could not be read from S3 or is not in the expected shape."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri or "")
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key:
        raise DiagnosticsReadError(f"diagnostics_uri {uri!r} is not an s3://bucket/key URI; no diagnostic plots")
    return parsed.netloc, key


class S3:
    """S3 through boto3. Built once where the services are assembled (bot.services.Services) and handed in;
    raises DiagnosticsReadError naming S3."""

    def __init__(self, clients: aws.AwsClients):
        self._clients = clients

    def read_diagnostics_csv(self, uri: str, region: str) -> "pd.DataFrame":
        """The evaluate task's diagnostics CSV (columns y_true, y_pred; others ignored) as a DataFrame.

        Raises DiagnosticsReadError naming S3 and the URI when the object cannot be read or lacks the columns.
        """
        import pandas as pd  # lazily: the web process does not load pandas

        bucket, key = parse_s3_uri(uri)
        s3 = self._clients.client("s3", region)
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
