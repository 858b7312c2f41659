"""The line each answered invocation leaves in the log, with the inference id SageMaker passed.

Answered requests are the hot path: through the logging module their line cost about 25 us (a record, the
caller's frame, the formatting, a flush), as much as the rest of a 1-row request. So they are written here in
one write call, in the same format as every other line (cli.LOG_FORMAT); refusals and failures, rarer and
with more to say, go through `logging` as usual.
"""

from __future__ import annotations

import os
import time

MAX_ID_CHARS = 128

# This process's id, as every line shows it: kept here rather than asked of the kernel at each line, and renewed
# in each gunicorn worker forked from the process that loaded the model.
_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)


def clean_id(inference_id: str | None) -> str:
    """The caller's id as it may appear in a log line: printable, bounded ('-' when there is none)."""
    if not inference_id:
        return "-"
    if len(inference_id) <= MAX_ID_CHARS and inference_id.isprintable() and " " not in inference_id:
        return inference_id
    return "".join(c if c.isprintable() and c != " " else "?" for c in inference_id[:MAX_ID_CHARS])


class AccessLog:
    def __init__(self, fd: int = 2):
        self.fd = fd
        self._second = -1
        self._stamp = ""

    def answered(self, rows: str, milliseconds: float, inference_id: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # threads racing here compute the same stamp
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        line = (f"{self._stamp},{int((now - second) * 1000):03d} INFO [{_pid}] POST /invocations 200 {rows} "
                f"{milliseconds:.1f} ms inference_id={inference_id}\n")
        try:
            os.write(self.fd, line.encode())
        except OSError:  # a closed or full stderr must not fail the request it describes
            pass
