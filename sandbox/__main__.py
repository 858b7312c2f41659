"""`python -m sandbox` (what `make run` starts without Slack credentials): the whole world on this machine,
the Slack-like page on PORT (default 3000). Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import sys
import threading

from sandbox.world import World


_SAY_LOCK = threading.Lock()


def _say(message: str) -> None:
    # Start-up steps are announced from several threads, and print() writes the text and its newline
    # separately, so two lines could run together: one locked write per line.
    with _SAY_LOCK:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


def main() -> int:
    port = int(os.environ.get("PORT") or 3000)
    print(f"No SLACK_BOT_TOKEN: starting the modelbot sandbox (page on port {port}; logs in .sandbox/run/)",
          flush=True)
    world = World(port=port, say=_say)
    stopping = threading.Event()

    def stop_now(signum: int, _frame: object) -> None:
        # Ctrl-C, SIGTERM (kill, systemd) and SIGHUP (the terminal closed) all stop the world, also while it is
        # still starting (an Airflow install takes minutes): the children live in their own sessions and would
        # outlive us if we just died. SIGINT is set here too because a shell script that starts us in the
        # background hands us SIGINT ignored, and Python then never raises KeyboardInterrupt.
        stopping.set()
        if world.defer_interrupt():
            return
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop_now)
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
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal must not leave children behind
            signal.signal(sig, signal.SIG_IGN)
        world.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
