"""S3: the evaluate task's diagnostics CSV a chart reads, and the captured predictions and labels the quality
monitor streams (listed page by page, read line by line from a byte offset: never a whole file in memory)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator
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


class S3ReadError(ExternalError):
    """S3 did not list or return what was asked; the message names S3, the location and what was not done."""


# Streaming: bytes asked of the socket at a time, and the longest line kept (SageMaker's largest real-time
# payload is 6 MB, 8 MB as BASE64, so a longer line is not a capture record; it is skipped, not buffered).
STREAM_CHUNK_BYTES = 256 * 1024
MAX_LINE_BYTES = 32 * 1024 * 1024
LIST_PAGE = 1000


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    etag: str


def parse_location(uri: str) -> tuple[str, str]:
    """(bucket, prefix ending in "/" or empty) of s3://bucket[/prefix]."""
    parsed = urlparse(uri or "")
    if parsed.scheme != "s3" or not parsed.netloc:
        raise S3ReadError(f"{uri!r} is not an s3://bucket/prefix location")
    prefix = parsed.path.lstrip("/")
    return parsed.netloc, (prefix.rstrip("/") + "/") if prefix else ""


def _s3_failure(exc: Exception, what: str) -> S3ReadError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "error")
        return S3ReadError(f"S3 did not {what} ({code})")
    return S3ReadError(f"S3 could not be reached to {what} ({type(exc).__name__}: {exc})")


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

    # ------------------------------------------------------------------------------------------------------
    # Listing and streaming (the quality monitor)

    def _pages(self, region: str, what: str, **kwargs) -> Iterator[dict]:
        """ListObjectsV2 a page at a time (kwargs: its parameters); raises S3ReadError naming `what`."""
        s3 = self._clients.client("s3", region)
        while True:
            try:
                page = s3.list_objects_v2(MaxKeys=LIST_PAGE, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, what) from exc
            yield page
            if not page.get("IsTruncated"):
                return
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = page.get("NextContinuationToken")

    def list_keys(self, bucket: str, prefix: str, region: str, *, start_after: str = "") -> Iterator[Listed]:
        """Objects under `prefix` in key order, after `start_after`, a page at a time. Raises S3ReadError."""
        after = {"StartAfter": start_after} if start_after else {}
        for page in self._pages(region, f"list s3://{bucket}/{prefix}", Bucket=bucket, Prefix=prefix, **after):
            for item in page.get("Contents") or []:
                yield Listed(item["Key"], int(item.get("Size") or 0), str(item.get("ETag") or "").strip('"'))

    def list_folders(self, bucket: str, prefix: str, region: str) -> list[str]:
        """The names of the "folders" directly under `prefix` (common prefixes at the next "/")."""
        return [p["Prefix"][len(prefix):].rstrip("/")
                for page in self._pages(region, f"list the folders of s3://{bucket}/{prefix}", Bucket=bucket,
                                        Prefix=prefix, Delimiter="/")
                for p in page.get("CommonPrefixes") or []]

    def stream_lines(self, bucket: str, key: str, region: str, *, offset: int = 0) -> Iterator[tuple[bytes | None, int]]:
        """(line without its newline, the byte offset just after it) for each line from `offset` on, read in
        STREAM_CHUNK_BYTES pieces. A last line without a newline is yielded too (its reader decides whether it
        was cut off). A line longer than MAX_LINE_BYTES is yielded as None (unreadable), never held in memory.
        Raises S3ReadError when S3 fails, before or during the read; lines already yielded stay valid."""
        s3 = self._clients.client("s3", region)
        where = f"s3://{bucket}/{key}"
        kwargs = {"Bucket": bucket, "Key": key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        try:
            body = s3.get_object(**kwargs)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"return {where} from byte {offset}") from exc
        buffer, position, skipping = bytearray(), offset, False
        try:
            for chunk in body.iter_chunks(STREAM_CHUNK_BYTES):
                start = 0
                while True:
                    end = chunk.find(b"\n", start)
                    if end < 0:
                        if not skipping:
                            buffer += chunk[start:]
                            if len(buffer) > MAX_LINE_BYTES:
                                buffer.clear()
                                skipping = True
                        position += len(chunk) - start
                        break
                    position += end + 1 - start
                    if skipping:
                        skipping = False
                        yield None, position
                    elif buffer:
                        buffer += chunk[start:end]
                        yield bytes(buffer), position
                        buffer.clear()
                    else:
                        yield chunk[start:end], position
                    start = end + 1
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _s3_failure(exc, f"finish reading {where} (stopped at byte {position})") from exc
        finally:
            body.close()
        if skipping:
            yield None, position
        elif buffer:
            yield bytes(buffer), position
