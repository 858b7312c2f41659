"""What the scaling capability says in a model's channel (each said once) and in `/model status`."""

from __future__ import annotations

from bot.integrations.autoscaling import Observed
from bot.scaling.desired import Target
from bot.slack.text import escape

ROLE_WORDS = {"serving": "serves the traffic", "stable": "stable variant of the rollout",
              "candidate": "candidate of the rollout", "baking": "old variant, kept for a rollback while baking",
              "parked": "rolled back, kept at one instance"}


def bounds(target: Target) -> str:
    text = f"{target.min_capacity}–{target.max_capacity} instances"
    if target.policy is not None:
        text += f", tracking {target.policy.target_value:g} invocations per instance a minute"
    if target.scale_in_suspended:
        text += ", scale-in suspended"
    return text


def turned_on(model: str, endpoint: str, variant: str, target: Target, before: Observed | None) -> str:
    took = ""
    if before is not None:
        took = (f" It was already a scalable target ({before.min_capacity}–{before.max_capacity} instances); "
                "modelbot keeps it as the models file says from now on.")
    return (f":gear: Auto scaling is on for *{escape(model)}*: `{escape(variant)}` of `{escape(endpoint)}`, "
            f"{bounds(target)} (Application Auto Scaling).{took} Change it in `[models.{escape(model)}.scaling]`.")


def drift(model: str, endpoint: str, variant: str, target: Target, found: list[str]) -> str:
    return (f":wrench: The auto scaling of `{escape(variant)}` on `{escape(endpoint)}` (*{escape(model)}*) was "
            f"changed outside modelbot: {escape('; '.join(found))}. modelbot put it back to {bounds(target)}. "
            f"To change it for good, edit `[models.{escape(model)}.scaling]` in the models file.")


def turned_off(model: str, endpoint: str, variants: list[str]) -> str:
    names = ", ".join(f"`{escape(v)}`" for v in variants)
    return (f":gear: Auto scaling removed from {names} of `{escape(endpoint)}` (*{escape(model)}*): the models file "
            f"no longer asks for it there. Instance counts stay as they are.")


def problem(model: str, error: str) -> str:
    return (f":warning: Auto scaling of *{escape(model)}* could not be kept right: {escape(error)} modelbot tries "
            "again every pass and says nothing more until it works or fails differently; rollouts do not wait "
            "for it.")


def capacity_not_asked(model: str, variant: str, share: float, error: str) -> str:
    return (f":warning: *{escape(model)}*: Application Auto Scaling could not be asked for the instances "
            f"`{escape(variant)}` needs for {share:.0%} of the traffic ({escape(error)}); the traffic moved anyway, "
            "as rollouts never wait for auto scaling. Watch its latency.")


def waiting_for_capacity(variant: str, have: int, need: int, share: float) -> str:
    return (f"waiting for capacity: `{escape(variant)}` has {have} of the {need} instances {share:.0%} of the "
            f"traffic needs in service (Application Auto Scaling was asked for {need}); the traffic moves "
            "once they are")


def status_bounds(observed: dict | None, applied: dict | None) -> str:
    """` (min 1, max 4)` for the status line: what Application Auto Scaling had at the last look."""
    seen = observed or applied
    if not seen:
        return ""
    text = f"min {seen['min']}, max {seen['max']}"
    if seen.get("scale_in_suspended"):
        text += ", scale-in suspended"
    return f" ({text})"
