"""The baseline for bench/ack_latency.py: a Bolt app whose /model listener only acks, on modelbot's server stack."""

from __future__ import annotations

import os

from slack_bolt import App

from bot.slack.client import make_web_client
from bot.web import serve


def build():
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    app = App(
        client=make_web_client(os.environ["SLACK_BOT_TOKEN"], os.environ["SLACK_API_URL"]),
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=False,
    )

    @app.command("/model")
    def only_ack(ack):
        ack()

    return SlackRequestHandler(app)


if __name__ == "__main__":
    serve(build, port=int(os.environ["PORT"]), workers=int(os.environ.get("MODELBOT_WEB_WORKERS", "1")),
          threads=int(os.environ.get("MODELBOT_WEB_THREADS", "16")))
