"""`modelbot pipeline check <model>`: the model's three functions run here, on a small sample, the way the
generated DAG runs them (its own step code, loaded from dags/modelbot_pipelines.py), with no AWS call.

What it reports: the data preprocess made, every validation row checked against REQUEST_SCHEMA and each
prediction against RESPONSE_SCHEMA (the row, field and rule of each refusal named), the model train returned,
the metric predict earns on the validation sample, what `promote` would be, and where the DAG would write each
artifact. The production model is in the Model Registry, which a check does not touch; pass a pickled model (or
a model.tar.gz) to compare with it, and production's schemas.json to compare the request schemas.
"""

from __future__ import annotations

import json
import pickle
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from bot.pipelines import dag_file
from bot.registry import Model

CHECK_RUN_ID = "<run_id>"


class CheckFailed(Exception):
    """The module breaks the contract (the message names the function and what was wrong), or cannot run."""


@dataclass
class CheckReport:
    model: str
    lines: list[str] = field(default_factory=list)
    metric: str = ""
    candidate: float | None = None
    production: float | None = None
    promote: bool | None = None
    artifacts: list[str] = field(default_factory=list)
    schema: dict | None = None  # evaluate's `schema` XCom

    def text(self) -> str:
        return "\n".join(self.lines)


def _capture_words(pipeline) -> str:
    if pipeline.capture_percent <= 0:
        return ("off for a new endpoint config (capture_percent = 0); an existing config's capture is "
                "kept unless capture_percent is set")
    return (f"requests and predictions, {pipeline.capture_percent}% of them, to {pipeline.capture_destination} "
            "(an endpoint config that already captures keeps its settings, except what the models file sets)")


def _sample(frame, rows: int):
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=0).sort_index()


def _production_model(steps, path: Path):
    raw = path.read_bytes()
    try:
        return steps.model_from_tarball(raw)
    except (tarfile.TarError, KeyError, EOFError, OSError):
        return pickle.loads(raw)


def _production_schemas(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckFailed(f"{path}: not a readable schemas.json ({exc})") from None
    if not isinstance(document, dict) or "request" not in document:
        raise CheckFailed(f"{path}: holds no \"request\" schema; pass the schemas.json a production package "
                          "names in its CustomerMetadataProperties (modelbot_schemas)")
    return document


def _schema_lines(schema: dict) -> list[str]:
    lines = []
    if schema["compared"]:
        if not schema["breaking_count"] and not schema["compatible_count"]:
            lines.append("request schema: the same as production's")
        elif not schema["breaking_count"]:
            lines.append(f"request schema: compatible with production's ({schema['compatible_count']} changes)")
        else:
            lines.append(f"request schema: {schema['breaking_count']} changes refuse requests production accepts"
                         + (" (allowed by allow_breaking_schema=true)" if schema["allowed"] else ""))
        lines.extend(f"  breaking: {c['field']}: {c['change']}" for c in schema["breaking"])
        lines.extend(f"  compatible: {c['field']}: {c['change']}" for c in schema["compatible"])
    elif schema["note"]:
        lines.append(f"request schema: not compared: {schema['note']}")
    return lines


def run_check(model: Model, conf: dict[str, str], *, rows: int = 200, dag_path: str | None = None,
              module_path: list[str] | None = None, production_model: str | None = None,
              production_schemas: str | None = None, registry_path: str | None = None) -> CheckReport:
    """Runs preprocess, train, evaluate locally; raises CheckFailed with the DAG's own message when broken."""
    try:
        steps = dag_file.load(dag_path)
    except dag_file.DagFileMissing as exc:
        raise CheckFailed(str(exc)) from None
    if model.pipeline is None:
        raise CheckFailed(f"model {model.name!r} has no [models.{model.name}.pipeline] section in the models file")
    # The DAG reads the models file itself: read it the same way, so a check also catches what Airflow would.
    try:
        pipelines, refused = steps.read_models_file(registry_path or steps.models_file())
    except steps.PipelineConfigError as exc:
        raise CheckFailed(str(exc)) from None
    pipeline = next((p for p in pipelines if p.model == model.name), None)
    if pipeline is None:
        why = next((r.message() for r in refused if model.name in r.models), "the DAG builds no pipeline for it")
        raise CheckFailed(why)
    # The workers find the module beside the DAG file (Airflow puts the DAGs folder on sys.path): so does this.
    for folder in [*(module_path or []), str(Path(dag_file.locate(dag_path)).parent), "."]:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    report = CheckReport(model=model.name, metric=pipeline.metric)
    say = report.lines.append
    say(f"Pipeline check of {model.name}: module {pipeline.module}, label {pipeline.label!r}, "
        f"metric {pipeline.metric} ({pipeline.direction}), DAG {pipeline.dag_id}")
    artifacts = steps.MemoryArtifacts()
    production_doc = _production_schemas(Path(production_schemas)) if production_schemas else None
    try:
        contract = steps.load_contract(pipeline.module)
        frames = steps.check_frames(contract.preprocess(dict(conf)), pipeline.label, pipeline.module)
        features = [c for c in frames["train"].columns if c != pipeline.label]
        say(f"preprocess: train {len(frames['train'])} rows, validation {len(frames['validation'])} rows, "
            f"{len(features)} features ({', '.join(map(str, features[:8]))}{', …' if len(features) > 8 else ''})")
        # Every validation row, not the sample: what modelbot-serve would refuse is what matters here.
        checked = steps.check_requests(contract, steps.features_of(
            contract, frames["validation"], pipeline.label, f"{pipeline.module}.preprocess(conf)['validation']"))
        say(f"schemas: REQUEST_SCHEMA (draft 2020-12) accepts all {checked} validation rows")
        sample = {part: _sample(frame, rows) for part, frame in frames.items()}
        if any(len(sample[p]) < len(frames[p]) for p in sample):
            say(f"  checking on a sample of {len(sample['train'])} train and {len(sample['validation'])} "
                f"validation rows (--rows)")
        # From here on the DAG's own steps, as Airflow runs them, on the sample.
        data = {f"{part}_uri": artifacts.put(f"{pipeline.run_prefix(CHECK_RUN_ID)}/{part}.pkl",
                                             pickle.dumps(frame, pickle.HIGHEST_PROTOCOL))
                for part, frame in sample.items()}
        trained = steps.step_train(pipeline, conf, CHECK_RUN_ID, data, artifacts)
        model_obj = pickle.loads(artifacts.get(trained["model_uri"]))
        say(f"train: returned a {type(model_obj).__name__}, {len(artifacts.get(trained['model_uri']))} bytes "
            "pickled")
        production = None
        if production_model:
            note = None if production_doc else ("no production schemas given (--production-schemas FILE compares "
                                                 "with a package's schemas.json)")
            production = steps.Production(model=_production_model(steps, Path(production_model)),
                                          arn=production_model, schemas=production_doc, schemas_note=note)
        elif production_doc:
            raise CheckFailed("--production-schemas needs --production-model: the DAG compares schemas with the "
                              "package it evaluates against")
        evaluation = steps.step_evaluate(pipeline, CHECK_RUN_ID, data, trained, artifacts, lambda: production, conf)
    except steps.Unretryable as exc:
        raise CheckFailed(str(exc)) from None
    except Exception as exc:  # the module's own code failed: the DAG's task would fail (and retry) the same way
        raise CheckFailed(f"{pipeline.module} raised {type(exc).__name__}: {exc}") from exc
    report.candidate, report.production, report.promote = (evaluation["candidate"], evaluation["production"],
                                                           evaluation["promote"])
    schema = evaluation["schema"]
    report.schema = schema
    say(f"schemas: RESPONSE_SCHEMA accepts all {schema['predictions_checked']} predictions of the candidate")
    report.lines.extend(_schema_lines(schema))
    if report.production is None:
        say(f"evaluate: {pipeline.metric} {report.candidate:.4g} on the validation sample; production not compared "
            f"(the DAG uses the newest Approved package of model package group {pipeline.group!r}; "
            "--production-model FILE compares with one here)")
        say("promote: true (the DAG promotes when the group has no Approved package yet)")
    else:
        say(f"evaluate: {pipeline.metric} candidate {report.candidate:.4g} vs production {report.production:.4g} "
            "on the same validation sample")
        say(f"promote: {'true' if report.promote else 'false'} (direction {pipeline.direction}, "
            f"min_improvement {pipeline.min_improvement:g}"
            + ("; the request schema would refuse requests production accepts: allow_breaking_schema=true "
               "deploys it anyway" if schema["blocked"] else "") + ")")
    report.artifacts = sorted(artifacts.blobs)
    say(f"artifacts would go under {pipeline.run_prefix(CHECK_RUN_ID)}/:")
    report.lines.extend(f"  {uri}" for uri in report.artifacts)
    if report.promote:
        say(f"deploy would: register the candidate in model package group {pipeline.group!r} "
            f"(PendingManualApproval, its schemas.json named in the package), create a SageMaker model from "
            f"{pipeline.image}, and put it on endpoint {pipeline.endpoint} at weight 0 under a variant name the "
            "endpoint never had (or create the endpoint with it alone if there is none); it refuses an endpoint "
            "whose traffic is split by a rollout")
        say(f"data capture: {_capture_words(pipeline)}")
    else:
        say("deploy would be skipped: the candidate does not beat production")
    say("Nothing was sent to AWS.")
    return report
