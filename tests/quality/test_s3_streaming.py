"""S3 read line by line from a byte offset, in small pieces (a line may span many), never holding a line longer
than the limit; listing after a key and listing folders."""

from __future__ import annotations

import boto3
import pytest

from bot.integrations import s3 as s3_module
from bot.integrations.aws import AwsClients
from bot.integrations.s3 import S3, S3ReadError

BODY = b'{"a": 1}\n\n{"b": "' + b"x" * 40 + b'"}\n' + b"y" * 100 + b"\n" + b'{"c": 3}'  # no newline at the end


@pytest.fixture
def s3(aws, monkeypatch):
    monkeypatch.setattr(s3_module, "STREAM_CHUNK_BYTES", 7)
    monkeypatch.setattr(s3_module, "MAX_LINE_BYTES", 64)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="bkt")
    client.put_object(Bucket="bkt", Key="p/2025/03/01/10/f.jsonl", Body=BODY)
    client.put_object(Bucket="bkt", Key="p/2025/03/01/11/g.jsonl", Body=b"")
    client.put_object(Bucket="bkt", Key="p/v42/x", Body=b"")
    return S3(AwsClients())


def test_lines_and_their_end_offsets_across_pieces_with_an_overlong_line_skipped(s3):
    lines = list(s3.stream_lines("bkt", "p/2025/03/01/10/f.jsonl", "us-east-1"))
    assert [line for line, _ in lines] == [b'{"a": 1}', b"", b'{"b": "' + b"x" * 40 + b'"}', None, b'{"c": 3}']
    assert [end for _, end in lines] == [9, 10, 60, 161, len(BODY)]
    resumed = list(s3.stream_lines("bkt", "p/2025/03/01/10/f.jsonl", "us-east-1", offset=60))
    assert resumed == lines[3:]


def test_listing_after_a_key_folders_and_failures_name_s3(s3):
    keys = [o.key for o in s3.list_keys("bkt", "p/", "us-east-1", start_after="p/2025/03/01/10")]
    assert keys == ["p/2025/03/01/10/f.jsonl", "p/2025/03/01/11/g.jsonl", "p/v42/x"]
    assert [o.key for o in s3.list_keys("bkt", "p/", "us-east-1", start_after="p/2025/03/01/11")] == [
        "p/2025/03/01/11/g.jsonl", "p/v42/x"]
    assert s3.list_folders("bkt", "p/", "us-east-1") == ["2025", "v42"]
    with pytest.raises(S3ReadError, match=r"S3 did not return s3://bkt/missing from byte 0 \(NoSuchKey\)"):
        list(s3.stream_lines("bkt", "missing", "us-east-1"))
    with pytest.raises(S3ReadError, match=r"S3 did not list s3://nobucket/p/ \(NoSuchBucket\)"):
        list(s3.list_keys("nobucket", "p/", "us-east-1"))
