"""`python -m sandbox` (what `make run` starts without Slack credentials): the whole world on this machine,
the Slack-like page on PORT (default 3000). Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import sys
import threading

from sandbox.world import World


def main() -> int:
    port = int(os.environ.get("PORT") or 3000)
    print(f"No SLACK_BOT_TOKEN: starting the modelbot sandbox (page on port {port}; logs in .sandbox/run/)",
          flush=True)
    world = World(port=port, say=lambda m: print(m, flush=True))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        url = world.start()
        print(f"\n  modelbot sandbox is ready: {url}\n  Try /model status in #ml-churn, then "
              "/model retrain churn and /model retrain fraud. Ctrl-C stops everything.\n", flush=True)
        while not stopping.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        print(f"The sandbox could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("Stopping the sandbox ...", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        world.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
