"""`modelbot-serve` and `serve` (SageMaker starts a container as `docker run IMAGE serve`).

Everything that can be wrong with the module, its schemas or the model is found before the server listens
and reported as ONE line on stderr, also written to /opt/ml/output/failure when that directory exists
(SageMaker's convention for a container's failure reason); the process then exits with status 1, rather than
answering every request with a 500.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from serving.app import ServingApp
from serving.errors import StartupError
from serving.loading import import_model_module, load_served_model
from serving.server import run, watch_predict
from serving.settings import Settings, failure_file

log = logging.getLogger("modelbot.serve")
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(message)s"  # serving/access_log.py writes the same

USAGE = """Serve a model module on SageMaker's container contract: GET /ping, POST /invocations.

environment:
  MODELBOT_MODEL_MODULE           the model's module (import name), defining predict, REQUEST_SCHEMA, RESPONSE_SCHEMA
  SM_MODEL_DIR                    the directory holding model.pkl (default /opt/ml/model)
  SAGEMAKER_BIND_TO_PORT          the port (default 8080)
  SAGEMAKER_MODEL_SERVER_WORKERS  worker processes (default: one per CPU)
  SAGEMAKER_MODEL_SERVER_TIMEOUT  seconds one predict may run before its worker is replaced (default 60)
  MODELBOT_SERVE_THREADS          connections each worker serves at once (default 4; predict runs one at a time)
  MODELBOT_SERVE_MAX_REQUEST_BYTES  larger bodies are refused with 413 (default 6291456, SageMaker's 6 MB)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelbot-serve", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="listen here instead of SAGEMAKER_BIND_TO_PORT")
    parser.add_argument("--host", help="the address to listen on (default 0.0.0.0)")
    parser.add_argument("--check", action="store_true",
                        help="check the module and its schemas (not the model), print what was found, and exit; "
                             "the Dockerfile runs it so a broken module fails the build")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)
    try:
        settings = Settings.from_environ(port=args.port, host=args.host)
        if args.check:
            contract = import_model_module(settings.module)
            features = ", ".join(contract.features) if contract.features else "none (JSON requests only)"
            print(f"{settings.module}: predict, REQUEST_SCHEMA and RESPONSE_SCHEMA are fine; FEATURES: {features}; "
                  f"the model comes from {'load(model_dir)' if contract.load else 'model.pkl'}")
            return 0
        model = load_served_model(settings.module, settings.model_dir)
    except StartupError as exc:
        return fail(str(exc), failure_file())
    log.info("modelbot-serve: %s loaded from %s; %d workers x %d threads on %s:%d", settings.module, model.source,
             settings.workers, settings.threads, settings.host, settings.port)
    run(lambda: ServingApp(model, max_request_bytes=settings.max_request_bytes), settings,
        watch=lambda app: watch_predict(app, settings.timeout))
    return 0


def fail(line: str, failure_path: str) -> int:
    line = "modelbot-serve: " + " ".join(line.split())  # one line, whatever the message held
    print(line, file=sys.stderr, flush=True)
    path = Path(failure_path)
    if path.parent.is_dir():
        try:
            path.write_text(line + "\n")
        except OSError:  # a read-only directory must not hide the reason on stderr
            pass
    return 1


def entry() -> None:
    sys.exit(main())
