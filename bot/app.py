"""The Bolt app factory: one App per process, listeners registered from handlers/."""

from __future__ import annotations

import logging
from slack_bolt import App, BoltResponse

from bot.config import secret
from bot.services import Services
from bot.store.foundation import claim_delivery
from handlers import register as register_handlers

log = logging.getLogger(__name__)


def build_app(services: Services, *, token_verification: bool = True) -> App:
    settings = services.settings
    app = App(
        client=services.slack,
        signing_secret=secret(settings.SLACK_SIGNING_SECRET) or "",
        # HTTP traffic is always checked against the signature, and whenever a signing secret is set (Bolt leaves
        # Socket Mode traffic alone: the app token authenticates it; bot/web.py does not serve Slack's HTTP
        # path at all in Socket Mode).
        request_verification_enabled=not settings.socket_mode or bool(settings.SLACK_SIGNING_SECRET),
        token_verification_enabled=token_verification,
        # Ack first, work after: listeners run in this pool once ack() has answered Slack.
        process_before_response=False,
        # Listeners only parse and ack (slow work goes elsewhere, see handlers/commands/model.py), so Bolt's
        # default pool is enough; more threads only lengthen the queue for the GIL.
        raise_error_for_unhandled_request=False,
        name="modelbot",
    )

    @app.middleware
    def provide_services(context, body, next):
        context["services"] = services
        # Slack redelivers an event it thinks we missed; an event acted on once is acknowledged and dropped.
        if body.get("type") == "event_callback" and body.get("event_id"):
            with services.store.session() as s:
                first = claim_delivery(s, "event:" + body["event_id"])
            if not first:
                return BoltResponse(status=200, body="")
        return next()

    @app.error
    def on_error(error, body, logger):
        logger.exception("listener failed: %s", error)

    register_handlers(app)
    return app
