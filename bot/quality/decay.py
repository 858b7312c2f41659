"""The decay judgement: a pure function of the window's metric, its labels, the reference and the settings.

A variant has decayed when its metric over the last window_days, on at least min_labels labels, is worse than
the reference by more than the tolerance. An open decay ends when the window is back within half the tolerance:
a metric that hovers at the threshold would otherwise open and close an episode (and say so) on every pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.quality.metrics import worse_by

OPEN, CLOSE, STAY, NOTHING = "open", "close", "stay", "nothing"
# States of a window, for /model quality and the status board.
DECAYED, OK, FEW_LABELS, NO_REFERENCE, UNDEFINED = "decayed", "ok", "few labels", "no reference", "undefined"
RECOVERY_SHARE = 0.5  # back within this share of the tolerance: recovered


@dataclass(frozen=True)
class Judgement:
    state: str  # DECAYED | OK | FEW_LABELS | NO_REFERENCE | UNDEFINED
    action: str  # OPEN | CLOSE | STAY | NOTHING: what happens to the variant's decay episode
    worse: float | None = None  # how much worse than the reference, in the metric's units


def judge(*, direction: str, tolerance: float, min_labels: int, value: float | None, labels: int,
          reference: float | None, is_open: bool) -> Judgement:
    if reference is None:
        return Judgement(NO_REFERENCE, STAY if is_open else NOTHING)
    if labels < min_labels:
        return Judgement(FEW_LABELS, STAY if is_open else NOTHING)
    if value is None:
        return Judgement(UNDEFINED, STAY if is_open else NOTHING)
    worse = worse_by(direction, value, reference)
    if worse > tolerance:
        return Judgement(DECAYED, STAY if is_open else OPEN, worse)
    if is_open:
        if worse <= tolerance * RECOVERY_SHARE:
            return Judgement(OK, CLOSE, worse)
        return Judgement(DECAYED, STAY, worse)  # better, not yet clearly back: still the same episode
    return Judgement(OK, NOTHING, worse)
