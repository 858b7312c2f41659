"""`modelbot pipeline check <model>`: the model's three functions run here, on a small sample, the way the
generated DAG runs them (its own step code, loaded from dags/modelbot_pipelines.py), with no AWS call.

What it reports: the data preprocess made, the model train returned, the metric predict earns on the
validation sample, what `promote` would be, and where the DAG would write each artifact. The production
model is in the Model Registry, which a check does not touch; pass a pickled model (or a model.tar.gz) to
compare with it.
"""

from __future__ import annotations

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

    def text(self) -> str:
        return "\n".join(self.lines)


def _sample(frame, rows: int):
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=0).sort_index()


def _production_model(steps, path: Path):
    raw = path.read_bytes()
    try:
        return steps.model_from_tarball(raw)
    except (tarfile.TarError, KeyError, EOFError, OSError):
        return pickle.loads(raw)


def run_check(model: Model, conf: dict[str, str], *, rows: int = 200, dag_path: str | None = None,
              module_path: list[str] | None = None, production_model: str | None = None,
              registry_path: str | None = None) -> CheckReport:
    """Runs preprocess, train, evaluate locally; raises CheckFailed with the DAG's own message when broken."""
    try:
        steps = dag_file.load(dag_path)
    except dag_file.DagFileMissing as exc:
        raise CheckFailed(str(exc)) from None
    if model.pipeline is None:
        raise CheckFailed(f"model {model.name!r} has no [models.{model.name}.pipeline] section in the models file")
    # The DAG reads the models file itself: read it the same way, so a check also catches what Airflow would.
    try:
        pipeline = next(p for p in steps.load_pipelines(registry_path) if p.model == model.name)
    except steps.PipelineConfigError as exc:
        raise CheckFailed(str(exc)) from None
    # The workers find the module beside the DAG file (Airflow puts the DAGs folder on sys.path): so does this.
    for folder in [*(module_path or []), str(Path(dag_file.locate(dag_path)).parent), "."]:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    report = CheckReport(model=model.name, metric=pipeline.metric)
    say = report.lines.append
    say(f"Pipeline check of {model.name}: module {pipeline.module}, label {pipeline.label!r}, "
        f"metric {pipeline.metric} ({pipeline.direction}), DAG {pipeline.dag_id}")
    artifacts = steps.MemoryArtifacts()
    try:
        functions = steps.load_functions(pipeline.module)
        frames = steps.check_frames(functions["preprocess"](dict(conf)), pipeline.label, pipeline.module)
        features = [c for c in frames["train"].columns if c != pipeline.label]
        say(f"preprocess: train {len(frames['train'])} rows, validation {len(frames['validation'])} rows, "
            f"{len(features)} features ({', '.join(map(str, features[:8]))}{', …' if len(features) > 8 else ''})")
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
            production = (_production_model(steps, Path(production_model)), production_model)
        evaluation = steps.step_evaluate(pipeline, CHECK_RUN_ID, data, trained, artifacts, lambda: production)
    except steps.DefinitionError as exc:
        raise CheckFailed(str(exc)) from None
    except Exception as exc:  # the module's own code failed: the DAG's task would fail (and retry) the same way
        raise CheckFailed(f"{pipeline.module} raised {type(exc).__name__}: {exc}") from exc
    report.candidate, report.production, report.promote = (evaluation["candidate"], evaluation["production"],
                                                           evaluation["promote"])
    if report.production is None:
        say(f"evaluate: {pipeline.metric} {report.candidate:.4g} on the validation sample; production not compared "
            f"(the DAG uses the newest Approved package of model package group {pipeline.group!r}; "
            "--production-model FILE compares with one here)")
        say("promote: true (the DAG promotes when the group has no Approved package yet)")
    else:
        say(f"evaluate: {pipeline.metric} candidate {report.candidate:.4g} vs production {report.production:.4g} "
            "on the same validation sample")
        say(f"promote: {'true' if report.promote else 'false'} (direction {pipeline.direction}, "
            f"min_improvement {pipeline.min_improvement:g})")
    report.artifacts = sorted(artifacts.blobs)
    say(f"artifacts would go under {pipeline.run_prefix(CHECK_RUN_ID)}/:")
    report.lines.extend(f"  {uri}" for uri in report.artifacts)
    if report.promote:
        say(f"deploy would: register the candidate in model package group {pipeline.group!r} "
            f"(PendingManualApproval), create a SageMaker model from {pipeline.image}, and put it on endpoint "
            f"{pipeline.endpoint} at weight 0 (or create the endpoint with it alone if there is none)")
    else:
        say("deploy would be skipped: the candidate does not beat production")
    say("Nothing was sent to AWS.")
    return report
