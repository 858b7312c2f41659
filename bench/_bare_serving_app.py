"""The floor for bench/serving.py: modelbot-serve's server stack (serving/server.py, gunicorn gthread, the same
worker and thread counts) around an app that reads the body and answers a constant, without model or schemas.

Usage: python bench/_bare_serving_app.py PORT WORKERS
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serving.server import run  # noqa: E402
from serving.settings import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_THREADS, DEFAULT_TIMEOUT_SECONDS, Settings  # noqa: E402

ANSWER = b'{"predictions": [0.5]}'


def bare_app(environ, start_response):
    if environ.get("PATH_INFO") == "/invocations":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    settings = Settings(module="-", model_dir="-", host="127.0.0.1", port=port, workers=workers,
                        threads=int(os.environ.get("MODELBOT_SERVE_THREADS", DEFAULT_THREADS)), timeout=DEFAULT_TIMEOUT_SECONDS,
                        max_request_bytes=DEFAULT_MAX_REQUEST_BYTES)
    run(lambda: bare_app, settings, loglevel="warning")
