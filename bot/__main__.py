"""`python -m bot`: the web process (HTTP on PORT, or Socket Mode when SLACK_APP_TOKEN is set)."""

from __future__ import annotations

import logging
import sys

from bot.config import ConfigError, load_settings, missing_for_start, secret
from bot.registry import RegistryError, load_registry

log = logging.getLogger("modelbot")


def _fail(lines: list[str]) -> int:
    print("modelbot cannot start:", file=sys.stderr)
    for line in lines:
        print(line if line.startswith("    ") else f"  - {line}", file=sys.stderr)
    return 2


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail([str(exc)])
    problems = []
    missing = missing_for_start(settings)
    if missing:
        problems.append("Slack credentials are missing. Set these environment variables (or put them in .env):")
        problems.extend(f"    {m}" for m in missing)
        problems.append("    Create the app from manifest.json (docs/connect.md, 'Slack') to get them.")
    try:
        load_registry(settings.MODELS_FILE)
    except RegistryError as exc:
        problems.extend(str(exc).splitlines())
    if problems:
        return _fail(problems)

    from bot.services import Services

    try:
        services = Services.from_settings(settings, migrate=True)
    except Exception as exc:
        return _fail([f"the database at DATABASE_URL could not be prepared: {type(exc).__name__}: {exc}"])
    services.store.dispose()  # the server's workers open their own connections

    # Charts are drawn in the command processes and the worker, which warm matplotlib at their start; the
    # web process loads it only if a button click draws one (bot/chart_loading.py).
    def factory():
        from bot.app import build_app
        from bot.web import WebApp

        from handlers.commands.deferred import ProcessDeferral

        worker_services = Services.from_settings(settings, migrate=False)
        from handlers.commands.status import warm as warm_status

        warm_status(worker_services)  # the first /model status acks from the store: pay its first query now
        if settings.MODELBOT_COMMAND_PROCESSES > 0:
            worker_services.command_deferral = ProcessDeferral(settings.MODELBOT_COMMAND_PROCESSES)
        return WebApp(worker_services, build_app(worker_services))

    if settings.socket_mode:
        return _socket_mode(settings, factory)
    from bot.web import serve

    log.info("modelbot listening on %s:%s (HTTP mode, POST /slack/events)", settings.MODELBOT_BIND, settings.PORT)
    serve(factory, port=settings.PORT, workers=settings.MODELBOT_WEB_WORKERS, threads=settings.MODELBOT_WEB_THREADS,
          bind=settings.MODELBOT_BIND)
    return 0


def _socket_mode(settings, factory) -> int:
    """Socket Mode for Slack; /healthz and /metrics still answer on PORT."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from slack_bolt.adapter.socket_mode import SocketModeHandler

    web = factory()
    handler = SocketModeHandler(web.slack.app, secret(settings.SLACK_APP_TOKEN))
    handler.connect()
    log.info("modelbot connected in Socket Mode; %s:%s serves only /healthz and /metrics", settings.MODELBOT_BIND,
             settings.PORT)

    class _Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    with make_server(settings.MODELBOT_BIND, settings.PORT, web, handler_class=_Quiet) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
