"""modelbot's rules and defaults inside the model template: the Jinja extension the template's copier.yml names
in `_jinja_extensions`, so Copier checks each answer with modelbot's own code as it is typed.

Copier loads it by import path, in whichever process renders the template (`modelbot new`, or `copier update`
run by hand in an environment where modelbot is installed). Copier treats templates with extensions as unsafe
(they run code): `modelbot new` passes `unsafe=True` for its own template; by hand, `copier update --trust`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from jinja2 import pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

from bot.scaffold import answers, sizing

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _answers(ctx: Context) -> dict[str, Any]:
    return {k: ctx.get(k) for k in (*answers.RULES, "features")}


@pass_context
def check(ctx: Context, value: Any, question: str) -> str:
    """The validator: "" for a good answer, else the rule it breaks."""
    return answers.problem(question, value, _answers(ctx))


def metric_choices(kind: str) -> str:
    """The metric question's choices as Copier reads them (YAML): 'auc (higher is better)': auc, ..."""
    choices = {}
    for name in answers.metrics_for(kind):
        better = "higher" if answers.direction(name) == "maximize" else "lower"
        choices[f"{name} ({better} is better)"] = name
    return yaml.safe_dump(choices, sort_keys=False)


def python(value: Any) -> str:
    """A Python literal of a value, for the generated source: strings in double quotes (a JSON string is a valid
    Python one), numbers exact."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python(v) for v in value) + "]"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"{type(value).__name__} is not a literal the template writes")


def toml_string(value: Any) -> str:
    """A TOML basic string: JSON's escaping is valid TOML for every string."""
    return json.dumps(str(value), ensure_ascii=False)


def toml_key(value: Any) -> str:
    """A TOML key: bare when TOML allows it, else quoted (a '.' in a bare key would nest tables)."""
    return str(value) if BARE_KEY.match(str(value)) else toml_string(value)


def toml_number(value: Any) -> str:
    number = sizing.number(value)
    if number is None:
        raise TypeError(f"{value!r} is not a number")
    return str(int(number)) if number.is_integer() else repr(number)


def toml_list(values: Any) -> str:
    return "[" + ", ".join(toml_string(v) for v in answers.slack_ids(values)) + "]"


class ModelbotAnswers(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters.update({
            "modelbot_check": check, "python": python, "toml_string": toml_string, "toml_list": toml_list,
            "toml_key": toml_key, "toml_number": toml_number,
            "slack_ids": answers.slack_ids,
        })
        environment.globals.update({
            "modelbot_metric_choices": metric_choices,
            "modelbot_direction": answers.direction,
            "modelbot_default_module": answers.default_module,
            "modelbot_default_endpoint": answers.default_endpoint,
            "modelbot_default_image": answers.default_image,
            "modelbot_placeholder_channel": answers.PLACEHOLDER_CHANNEL,
            "modelbot_instance": lambda vcpu, mem, region: sizing.choose(vcpu, mem, region).instance_type,
            "modelbot_instance_why": lambda vcpu, mem, region: sizing.choose(vcpu, mem, region).why,
        })
