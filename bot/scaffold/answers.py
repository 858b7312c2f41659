"""The rules each answer of the model template must follow: the models file's own (bot/registry.py, applied
through its pydantic models so the two can never disagree), plus what the generated package needs on top.

`problem(question, value, answers)` is "" for a good answer, else one sentence naming the rule; the template's
validators call it through bot/scaffold/jinja_ext.py, so an answer is checked as it is typed, and `--data` and
`--defaults` answers are checked the same way.
"""

from __future__ import annotations

import functools
import keyword
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3
from pydantic import BaseModel, ValidationError

from bot.registry import MODEL_NAME, PIPELINE_METRICS, ModelSpec, PipelineSettings
from bot.scaffold import sizing
from bot.scaffold.sizing import number

# SageMaker's rule for endpoint names (CreateEndpoint: EndpointName); the models file does not check it, but
# the pipeline's deploy step would fail on a name SageMaker refuses.
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# A container image reference as Docker and SageMaker read it: [registry[:port]/]path[:tag][@digest].
IMAGE_REFERENCE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
# A label column name the generated source can hold in strings and docstrings as it is.
LABEL_COLUMN = re.compile(r"^\w[\w .:/-]*$")
# Airflow's schedule presets, and a cron expression's five fields.
SCHEDULE_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly",
                    "@annually", "@midnight")
CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#LW-]+$")
# Module names the generated package must not take: its own dependencies would be shadowed by it.
TAKEN_MODULES = {"numpy", "pandas", "pytest", "hypothesis", "jsonschema", "hypothesis_jsonschema", "modelbot",
                 "bot", "serving", "tests", "test", "conftest", "setup"}

# The placeholders the template answers with when nothing better is known; the models file modelbot acts on
# must not receive them (bot/scaffold/service.py refuses), and `modelbot new` lists them when they remain.
PLACEHOLDER_CHANNEL = "C0CHANGEME"
PLACEHOLDER_ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Existing:
    """What the models file a new model joins already uses: a new model may not take its name, dag_id or
    endpoint (two models sharing them would move each other's traffic)."""

    path: str = ""
    names: frozenset[str] = frozenset()
    dag_ids: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)


# Set by `modelbot new --models-file` for the questions asked while it runs (the same process renders them).
EXISTING: ContextVar[Existing] = ContextVar("modelbot_scaffold_existing", default=Existing())


def _pydantic_problem(model: type[BaseModel], fld: str, value: Any, required: dict[str, Any]) -> str:
    """The registry model's own verdict on one field, the others filled with values it accepts."""
    try:
        model.model_validate({**required, fld: value})
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            if err["loc"][:1] != (fld,):
                continue
            msg = err["msg"].removeprefix("Value error, ")
            found.append(msg if len(err["loc"]) == 1 else f"item {err['loc'][1] + 1}: {msg}")
        return "; ".join(found) or "is not accepted by the models file"
    return ""


def _model_spec(fld: str, value: Any) -> str:
    return _pydantic_problem(ModelSpec, fld, value, {"channel": PLACEHOLDER_CHANNEL})


def _pipeline(fld: str, value: Any) -> str:
    required = {"module": "m", "label": "y", "image": "i", "artifacts": "s3://bucket/prefix"}
    return _pydantic_problem(PipelineSettings, fld, value, required)


def slack_ids(text: Any) -> list[str]:
    """Owners typed as 'U0ALICE U0BOB', 'U0ALICE, U0BOB' or given as a list."""
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    return [part for part in re.split(r"[\s,]+", str(text or "")) if part]


# ---- one function per question ---------------------------------------------------------------------------------

def model_name(value: str, answers: dict) -> str:
    if not MODEL_NAME.match(value or ""):
        return (f"{value!r} is not a model name: letters, digits, '_', '-' and '.', starting with a letter or "
                "digit (the models file's rule)")
    existing = EXISTING.get()
    if value in existing.names:
        return f"{existing.path} already has a model {value!r}: pick another name"
    return ""


def module(value: str, answers: dict) -> str:
    problem = _pipeline("module", value)
    if problem:
        return problem
    if "." in value:
        return f"{value!r}: give one module name without dots; the package is this one file ({value}.py)"
    if keyword.iskeyword(value) or value in sys.stdlib_module_names or value in TAKEN_MODULES:
        return f"{value!r} is a Python keyword or a module the package needs itself; pick another name"
    return ""


def label(value: str, answers: dict) -> str:
    if not LABEL_COLUMN.match(value or "") or value != value.strip():
        return (f"{value!r}: give the label column's name in letters, digits, spaces and _ . : / - (it is written "
                "into the module's code and docs)")
    features = answers.get("features") or ()
    if value in features:
        return f"{value!r} is one of the starter features ({', '.join(features)}); pick another name"
    return _pipeline("label", value)


def kind(value: str, answers: dict) -> str:
    return "" if value in KINDS else f"{value!r}: answer {' or '.join(KINDS)}"


def metric(value: str, answers: dict) -> str:
    allowed = metrics_for(answers.get("kind", ""))
    if value not in allowed:
        return (f"{value!r} is not a {answers.get('kind', '')} metric the pipeline computes "
                f"({', '.join(allowed)})")
    return ""


def min_improvement(value: Any, answers: dict) -> str:
    return _pipeline("min_improvement", value)


def test_size(value: Any, answers: dict) -> str:
    share = number(value)
    if share is None or not 0 < share < 1:
        return f"{value!r}: give the share of rows kept for validation, between 0 and 1 (e.g. 0.2)"
    return ""


def resource(fld: str) -> Callable[[Any, dict], str]:
    def check(value: Any, answers: dict) -> str:
        return _model_spec(fld, value)

    return check


@functools.cache
def sagemaker_regions() -> frozenset[str]:
    """Regions botocore's bundled endpoint data offers SageMaker in. (bot/pricing's known_regions adds the GPU
    table's, which costs seconds of SDK import: too slow for a question answered at a prompt.)"""
    session = boto3.session.Session()
    found: set[str] = set()
    for partition in session.get_available_partitions():
        found.update(session.get_available_regions("sagemaker", partition_name=partition))
    return frozenset(found)


def region(value: str, answers: dict) -> str:
    if value not in sagemaker_regions():
        examples = ", ".join(r for r in ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1")
                             if r in sagemaker_regions())
        return f"{value!r} is not a region SageMaker is offered in; give a region code such as {examples}"
    return ""


def serving_instance_type(value: str, answers: dict) -> str:
    if not re.match(r"^ml\.[a-z0-9-]+\.[a-z0-9-]+$", value or ""):
        return f"{value!r} is not a SageMaker instance type (e.g. ml.m5.large)"
    return sizing.misfit(value, answers)


def schedule(value: str, answers: dict) -> str:
    if not value:
        return ""  # no schedule: retrained only by `/model retrain`
    problem = _pipeline("schedule", value)
    if problem:
        return problem
    if value.startswith("@"):
        return "" if value in SCHEDULE_PRESETS else f"{value!r} is not an Airflow preset ({', '.join(SCHEDULE_PRESETS)})"
    fields = value.split()
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        return (f"{value!r} is not a cron expression (five fields: minute hour day month weekday, e.g. "
                "'0 3 * * 1') nor an Airflow preset such as @daily; leave it empty to retrain only on demand")
    return ""


def channel(value: str, answers: dict) -> str:
    return _model_spec("channel", value)


def owners(value: Any, answers: dict) -> str:
    return _model_spec("owners", slack_ids(value))


def oncall(value: str, answers: dict) -> str:
    return _model_spec("oncall", value) if value else ""


def dag_id(value: str, answers: dict) -> str:
    problem = _model_spec("dag_id", value)
    if problem:
        return problem
    taken_by = EXISTING.get().dag_ids.get(value)
    return f"dag_id {value!r} is model {taken_by!r}'s in {EXISTING.get().path}" if taken_by else ""


def endpoint(value: str, answers: dict) -> str:
    if not ENDPOINT_NAME.match(value or ""):
        return (f"{value!r} is not a SageMaker endpoint name: at most 63 letters, digits and '-', starting and "
                "ending with a letter or digit")
    taken_by = EXISTING.get().endpoints.get(value)
    return f"endpoint {value!r} is model {taken_by!r}'s in {EXISTING.get().path}" if taken_by else ""


def artifacts(value: str, answers: dict) -> str:
    return _pipeline("artifacts", value)


def image(value: str, answers: dict) -> str:
    problem = _pipeline("image", value)
    if problem:
        return problem
    if not IMAGE_REFERENCE.match(value):
        return (f"{value!r} is not an image reference such as "
                f"{PLACEHOLDER_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/churn:latest")
    return ""


def models_file(value: str, answers: dict) -> str:
    return "" if value and value.endswith(".toml") else f"{value!r}: the models file is a .toml file"


RULES: dict[str, Callable[[Any, dict], str]] = {
    "model_name": model_name, "kind": kind, "label": label, "metric": metric, "min_improvement": min_improvement,
    "test_size": test_size, "training_vcpu": resource("vcpu"), "training_memory_gib": resource("memory_gib"),
    "serving_vcpu": resource("vcpu"), "serving_memory_gib": resource("memory_gib"), "region": region,
    "serving_instance_type": serving_instance_type, "schedule": schedule, "channel": channel, "owners": owners,
    "oncall": oncall, "dag_id": dag_id, "endpoint": endpoint, "module": module, "artifacts": artifacts,
    "image": image, "models_file": models_file,
}


def problem(question: str, value: Any, answers: dict) -> str:
    """"" when the answer is good, else what rule it breaks."""
    return RULES[question](value, answers)


# ---- what depends on the pipeline's own tables -------------------------------------------------------------------

# The metrics the generated DAG computes for each kind of model: its CLASSIFICATION and REGRESSION tables
# (dags/modelbot_contract.py), which a test keeps equal to these. Not read from the DAG file at run time: an
# installed modelbot renders the template without a checkout's dags/ folder.
METRICS_BY_KIND = {"classification": ("auc", "accuracy", "f1", "logloss"), "regression": ("rmse", "mae", "r2")}
KINDS = tuple(METRICS_BY_KIND)


def metrics_for(kind_: str) -> tuple[str, ...]:
    return METRICS_BY_KIND.get(kind_, ())


def direction(metric_: str) -> str:
    return PIPELINE_METRICS.get(metric_, "maximize")


def default_module(name: str) -> str:
    """churn-v2 -> churn_v2_model: an importable module name from a model name."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name or "model").strip("_") or "model"
    if base[0].isdigit():
        base = "m" + base
    return f"{base}_model"


def default_image(name: str, region_: str) -> str:
    """An ECR image URI in the placeholder account: the account is the one part modelbot cannot know."""
    repository = re.sub(r"[^a-z0-9]+", "-", (name or "model").lower()).strip("-") or "model"
    return f"{PLACEHOLDER_ACCOUNT}.dkr.ecr.{region_}.amazonaws.com/{repository}:latest"


def default_endpoint(name: str) -> str:
    """churn_v2 -> churn-v2-prod: SageMaker endpoint names take only letters, digits and '-'."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", name or "model").strip("-") or "model"
    return f"{base[:58].rstrip('-')}-prod"
