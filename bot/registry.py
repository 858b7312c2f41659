"""The model registry: models.toml, as docs/reference/models-file.md describes it (generated from this module).

Loading is strict on purpose: a typo in a file that decides who may roll back production should stop the
app at start with the file, the model and the field named, not surface at 3 a.m.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SLACK_USER = re.compile(r"^[UW][A-Z0-9]+$")
SLACK_ONCALL = re.compile(r"^[SUW][A-Z0-9]+$")
SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]+$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


class RegistryError(Exception):
    """The models file cannot be used; the message names the file, the model and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _matches(pattern: re.Pattern, what: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


ChannelId = Annotated[str, _matches(SLACK_CHANNEL, "a Slack channel ID (C..., G...)")]
UserId = Annotated[str, _matches(SLACK_USER, "a Slack user ID (U...)")]
OncallId = Annotated[str, _matches(SLACK_ONCALL, "a Slack user group (S...) or user (U...) ID")]


class RolloutSettings(_Strict):
    steps: tuple[float, ...] = Field(default=(10, 25, 50, 100), description=(
        "the candidate's traffic percent at each step, in order, strictly increasing, ending at 100"))
    min_requests: int = Field(default=500, ge=1, description="requests each variant needs in a step before it may shift")
    margin: float = Field(default=0.002, gt=0, lt=1, description=(
        "largest acceptable absolute increase in the 5XX (and 4XX) error rate: 0.002 is 0.2 percentage points"))
    alpha: float = Field(default=0.01, gt=0, lt=0.5, description=(
        "bound on false rollbacks (and on shifting a candidate worse by the margin) over the whole rollout, "
        "however often it is judged"))
    max_step_minutes: float = Field(default=120, gt=0, description=(
        "a step still undecided after this long pauses the rollout and asks the owners"))
    bake_minutes: float = Field(default=60, ge=0, description=(
        "after 100%, the old variant stays on the endpoint at 0% this long, for an instant rollback"))
    latency_margin: float | None = Field(default=None, gt=0, description=(
        "relative: 0.2 rolls back a candidate whose mean ModelLatency is shown to be over 20% above the "
        "stable variant's; unset: latency is not judged"))

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("needs at least one step, ending at 100")
        if any(not (0 < s <= 100) for s in v):
            raise ValueError("every step is a traffic percent in (0, 100]")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("steps must increase strictly")
        if v[-1] != 100:
            raise ValueError("the last step must be 100 (full traffic to the candidate)")
        return v


# The metrics dags/modelbot_pipelines.py computes, and which way is better (kept equal by a test).
PIPELINE_METRICS = {"auc": "maximize", "accuracy": "maximize", "f1": "maximize", "logloss": "minimize",
                    "rmse": "minimize", "mae": "minimize", "r2": "maximize"}
PYTHON_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
S3_LOCATION = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
NonEmpty = Annotated[str, Field(min_length=1)]


class PipelineSettings(_Strict):
    """[models.X.pipeline]: modelbot generates the model's DAG from three functions (dags/modelbot_pipelines.py)."""

    module: Annotated[str, _matches(PYTHON_MODULE, "an importable module name (e.g. 'churn_model')")] = Field(
        description="the model's module (preprocess, train, predict, the schemas), importable on the Airflow workers")
    label: NonEmpty = Field(description="the label column of the frames preprocess returns")
    image: NonEmpty = Field(description="the serving image (built from serving/Dockerfile) the deploy step's SageMaker model runs")
    artifacts: Annotated[str, _matches(S3_LOCATION, "an S3 location (s3://bucket/prefix)")] = Field(description=(
        "S3 prefix for everything the pipeline writes: <artifacts>/<dag_id>/<run_id>/"))
    schedule: NonEmpty | None = Field(default=None, description="Airflow schedule (e.g. \"@weekly\"); unset: on demand only")
    min_improvement: float = Field(default=0.0, ge=0, description=(
        "the candidate must beat production by at least this much, in the metric's units, to be deployed"))
    instance_type: NonEmpty | None = Field(default=None, description=(
        "SageMaker instance type of the candidate's variant; unset: the stable variant's"))
    execution_role: NonEmpty | None = Field(default=None, description=(
        "IAM role of the candidate's SageMaker model; unset: the stable variant's model's"))
    # Data capture on the endpoint config the deploy step writes: requests and predictions, for quality.
    capture_percent: int = Field(default=100, ge=0, le=100, description=(
        "percent of requests and predictions SageMaker data capture records; 0 turns capture off"))
    capture_uri: Annotated[str, _matches(S3_LOCATION, "an S3 location (s3://bucket/prefix)")] | None = Field(
        default=None, description="where data capture writes; unset: <artifacts>/capture")

    @property
    def capture_destination(self) -> str:
        """Where SageMaker writes captured requests and predictions: capture_uri, else <artifacts>/capture."""
        return self.capture_uri or self.artifacts.rstrip("/") + "/capture"


class QualitySettings(_Strict):
    """[models.X.quality]: the model's metric measured in production from captured predictions and labels."""

    labels: Annotated[str, _matches(S3_LOCATION, "an S3 location (s3://bucket/prefix)")] = Field(description=(
        "S3 prefix of the ground-truth labels, in SageMaker Model Monitor's format (yyyy/mm/dd/hh/*.jsonl)"))
    window_days: int = Field(default=7, ge=1, le=365, description="the metric is judged over this many recent days")
    tolerance: float = Field(ge=0, description=(
        "worse than the reference by more than this, in the metric's units, over window_days: decay"))
    min_labels: int = Field(default=200, ge=1, description="no judgement on fewer labels than this in the window")
    retrain_on_decay: bool = Field(default=False, description="true: a decay also starts the model's retraining")


class ScalingSettings(_Strict):
    """[models.X.scaling]: Application Auto Scaling on the variant that serves the model."""

    min_instances: int = Field(default=1, description="fewest instances of the serving variant (at least 1)")
    max_instances: int = Field(ge=1, description="most instances of the serving variant (at least min_instances)")
    target_invocations_per_instance: float = Field(description=(
        "target-tracking target: invocations per instance per minute (more than 0)"))
    scale_in_cooldown_seconds: int | None = Field(default=None, ge=0, description=(
        "seconds after a scale-in before another; unset: Application Auto Scaling's default"))
    scale_out_cooldown_seconds: int | None = Field(default=None, ge=0, description=(
        "seconds after a scale-out before another; unset: Application Auto Scaling's default"))

    @field_validator("min_instances")
    @classmethod
    def _min(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"{v} instances: a real-time endpoint cannot scale below 1 instance")
        return v

    @field_validator("target_invocations_per_instance")
    @classmethod
    def _target(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"{v:g}: the target is invocations per instance per minute and must be more than 0")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> "ScalingSettings":
        if self.max_instances < self.min_instances:
            raise ValueError(f"max_instances ({self.max_instances}) must be at least min_instances "
                             f"({self.min_instances})")
        return self


class Defaults(_Strict):
    region: str = Field(default="us-east-1", description="AWS region of the models that name none")
    alert_channel: ChannelId | None = Field(default=None, description=(
        "channel ID where pages are posted, for models that name none; unset: the rollout's thread, else the "
        "model's channel"))
    oncall: OncallId | None = Field(default=None, description=(
        "user group (S...) or user (U...) paged, for models that name none; unset: the model's owners"))
    admins: tuple[UserId, ...] = Field(default=(), description="user IDs (U...) that may do anything to any model")


class ModelSpec(_Strict):
    dag_id: str | None = Field(default=None, description=(
        "the Airflow DAG that retrains the model; its runs get threads; no two models share one"))
    endpoint: str | None = Field(default=None, description=(
        "the SageMaker endpoint that serves the model, whose weights rollouts move; no two models share one"))
    channel: ChannelId = Field(description="channel ID where the model's run and rollout threads go")
    metric: str | None = Field(default=None, description=(
        "the metric the DAG's evaluate task reports; with a pipeline: auc, accuracy, f1, logloss, rmse, mae or r2"))
    direction: Literal["maximize", "minimize"] = Field(default="maximize", description=(
        "whether a higher (maximize) or lower (minimize) metric is better"))
    owners: tuple[UserId, ...] = Field(default=(), description=(
        "user IDs (U...) that may retrain, promote, pause, resume and roll back the model"))
    oncall: OncallId | None = Field(default=None, description="user group (S...) or user (U...) to page; overrides defaults.oncall")
    region: str | None = Field(default=None, description="AWS region of the endpoint; unset: defaults.region")
    alert_channel: ChannelId | None = Field(default=None, description=(
        "channel ID for this model's pages; overrides defaults.alert_channel"))
    vcpu: float | None = Field(default=None, gt=0, description="vCPUs the model needs (`/model pricing <model>`)")
    memory_gib: float | None = Field(default=None, gt=0, description="memory the model needs, in GiB")
    gpus: int = Field(default=0, ge=0, description="GPUs the model needs")
    rollout: RolloutSettings = Field(default=RolloutSettings(), description="[models.X.rollout]: the gradual rollout")
    pipeline: PipelineSettings | None = Field(default=None, description=(
        "[models.X.pipeline]: modelbot generates the model's DAG from three functions"))
    quality: QualitySettings | None = Field(default=None, description=(
        "[models.X.quality]: the metric measured in production from captured predictions and labels"))
    scaling: ScalingSettings | None = Field(default=None, description=(
        "[models.X.scaling]: Application Auto Scaling on the serving variant"))

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, v: str | None) -> str | None:
        # Airflow's own rule (airflow.utils.helpers.validate_key): one bad id would break every generated DAG.
        if v is not None and not DAG_ID.match(v):
            raise ValueError(f"{v!r} is not a valid Airflow dag_id: at most 250 letters, digits, '_', '-' and '.'")
        return v


class _File(_Strict):
    defaults: Defaults = Defaults()
    models: dict[str, ModelSpec] = {}

    @model_validator(mode="after")
    def _names(self) -> "_File":
        for name in self.models:
            if not MODEL_NAME.match(name):
                raise ValueError(f"model name {name!r} may hold only letters, digits, '_', '-' and '.'")
        return self


def shared_names(models: dict[str, ModelSpec]) -> list[tuple[str, str, str, str]]:
    """(field, value, first model, second model) for every endpoint or dag_id two models share: their rollouts
    would move each other's weights, and one's DAG would deploy onto the other's endpoint."""
    found = []
    for fld in ("endpoint", "dag_id"):
        seen: dict[str, str] = {}
        for name, spec in models.items():
            value = getattr(spec, fld)
            if not value:
                continue
            if value in seen:
                found.append((fld, value, seen[value], name))
            else:
                seen[value] = name
    return found


@dataclass(frozen=True)
class Model:
    """One registered model with the defaults already applied."""

    name: str
    spec: ModelSpec
    defaults: Defaults

    def __getattr__(self, item: str) -> Any:  # spec fields read as model.endpoint, model.owners, ...
        return getattr(self.spec, item)

    @property
    def region(self) -> str:
        return self.spec.region or self.defaults.region

    @property
    def oncall(self) -> str | None:
        return self.spec.oncall or self.defaults.oncall

    @property
    def alert_channel(self) -> str | None:
        return self.spec.alert_channel or self.defaults.alert_channel

    @property
    def admins(self) -> tuple[str, ...]:
        return self.defaults.admins


@dataclass(frozen=True)
class Registry:
    path: str
    defaults: Defaults
    models: dict[str, Model] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.models)

    def get(self, name: str) -> Model | None:
        return self.models.get(name)

    def suggest(self, name: str) -> list[str]:
        lowered = {n.lower(): n for n in self.models}
        hits = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
        return [lowered[h] for h in hits]

    def by_dag(self, dag_id: str) -> list[Model]:
        return [m for m in self.models.values() if m.dag_id == dag_id]

    def by_endpoint(self, endpoint: str) -> list[Model]:
        return [m for m in self.models.values() if m.endpoint == endpoint]


def _field_path(parts: list[Any]) -> str:
    path = ""
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
    return path


def _describe_location(loc: tuple[Any, ...]) -> tuple[str | None, str]:
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "models":
        return str(parts[1]), _field_path(parts[2:]) or "(the table)"
    return None, _field_path(parts) or "(top level)"


_KNOWN_FIELDS = {
    "models": set(ModelSpec.model_fields),
    "rollout": set(RolloutSettings.model_fields),
    "pipeline": set(PipelineSettings.model_fields),
    "quality": set(QualitySettings.model_fields),
    "scaling": set(ScalingSettings.model_fields),
    "defaults": set(Defaults.model_fields),
}
SECTIONS = ("rollout", "pipeline", "quality", "scaling")  # the optional tables of a model


def _explain(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        loc = [str(p) for p in err["loc"]]
        table = next((t for t in SECTIONS if t in loc[:-1]), None) or (
            "defaults" if loc[0] == "defaults" else "models")
        if loc[0] != "models" and loc[0] != "defaults" and len(loc) == 1:
            table = None
        known = _KNOWN_FIELDS.get(table, {"defaults", "models"})
        close = difflib.get_close_matches(loc[-1], sorted(known), n=1)
        msg = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}")
    elif err["type"] == "missing":
        msg = "is required"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


def _pipeline_problems(spec: ModelSpec) -> list[tuple[str, str]]:
    """What a model with a pipeline section also needs: the DAG is built from these fields."""
    if spec.pipeline is None:
        return []
    problems = [(f, "is required for a model with a pipeline") for f in ("dag_id", "endpoint", "metric")
                if not getattr(spec, f)]
    if spec.metric and spec.metric not in PIPELINE_METRICS:
        problems.append(("metric", f"{spec.metric!r} is not a metric the pipeline computes "
                                   f"({', '.join(PIPELINE_METRICS)})"))
    elif spec.metric and PIPELINE_METRICS[spec.metric] != spec.direction:
        better = "higher" if PIPELINE_METRICS[spec.metric] == "maximize" else "lower"
        problems.append(("direction", f"{spec.metric} is better when {better}; set direction = "
                                      f"\"{PIPELINE_METRICS[spec.metric]}\""))
    return problems


def load_registry(path: str | Path) -> Registry:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(
            f"{path}: models file not found. Copy models.example.toml to {path} or set MODELS_FILE."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            model, fld = _describe_location(err["loc"])
            where = f"model {model!r}, field {fld!r}" if model else f"field {fld!r}"
            lines.append(f"{path}: {where}: {_explain(err)}")
        raise RegistryError("\n".join(lines)) from None
    problems = [f"{path}: model {name!r}, field {fld!r}: {why}"
                for name, spec in parsed.models.items() for fld, why in _pipeline_problems(spec)]
    problems += [f"{path}: models {first!r} and {second!r}, field {fld!r}: both name {value!r}; two models may "
                 f"not share {'an' if fld == 'endpoint' else 'a'} {fld}"
                 for fld, value, first, second in shared_names(parsed.models)]
    if problems:
        raise RegistryError("\n".join(problems))
    models = {name: Model(name=name, spec=spec, defaults=parsed.defaults) for name, spec in parsed.models.items()}
    return Registry(path=str(path), defaults=parsed.defaults, models=models)
