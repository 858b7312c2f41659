"""`modelbot new NAME DIR`: what it writes with defaults and with answers, where the entry goes, and what it
refuses, leaving nothing behind."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from bot.registry import load_registry
from bot.scaffold import service
from tests.scaffold.conftest import modelbot

SHARED = """\
# the platform's models file: comments and layout must survive an append
[defaults]
region = "eu-west-1"
alert_channel = "C0ALERTS"
admins = ["U0ADMIN"]

[models.churn]
dag_id = "churn_pipeline"
endpoint = "churn-prod"
channel = "C0CHURN"
metric = "auc"
owners = ["U0ALICE"]

[models.churn.pipeline]
module = "churn_model"
label = "churned"
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:latest"
artifacts = "s3://team-ml-artifacts/churn"
"""
REAL = ["--data", "channel=C0FRAUD", "--data", "image=555566667777.dkr.ecr.eu-west-1.amazonaws.com/fraud:1"]


def leftovers(folder: Path) -> list[str]:
    """Anything a failed run could have left beside DIR: staging folders, half-written models files."""
    return sorted(p.name for p in folder.iterdir() if ".modelbot-new." in p.name or p.name.endswith(".new"))


def test_defaults_make_the_whole_package_and_say_what_is_still_a_placeholder(made):
    package, out = made
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file() and ".git" not in p.parts)
    for expected in (".copier-answers.yml", ".dockerignore", ".gitignore", ".github/workflows/model.yml",
                     "Dockerfile", "README.md", "models.toml", "probe_model.py", "pyproject.toml",
                     "tests/conftest.py", "tests/strategies.py", "tests/test_model.py",
                     "tests/test_pipeline_check.py", "tests/test_schemas.py"):
        assert expected in files
    registry = load_registry(package / "models.toml")
    probe = registry.get("probe")
    assert (probe.dag_id, probe.endpoint, probe.metric, probe.direction) == ("probe_pipeline", "probe-prod", "auc",
                                                                            "maximize")
    assert (probe.pipeline.module, probe.pipeline.label, probe.pipeline.instance_type) == (
        "probe_model", "label", "ml.m5.large")
    assert "Made model package probe in" in out and "pip install -e '.[test]'" in out
    assert "channel (C0CHANGEME)" in out and "owners (none)" in out
    # No prices cached: the sensible default, and why.
    assert "ml.m5.large is the smallest general-purpose (ml.m5) instance with at least 1 vCPU, 2 GiB" in out
    assert "does not exist here" in out
    # A git repository whose first commit is the package: `modelbot update` merges into it.
    log = subprocess.run(["git", "log", "--format=%s"], cwd=package, capture_output=True, text=True).stdout
    assert "probe: a model package from modelbot's template" in log
    answers = yaml.safe_load((package / ".copier-answers.yml").read_text())
    assert answers["_commit"].startswith("v") and answers["model_name"] == "probe"
    assert Path(answers["_src_path"]).expanduser() == Path(os.environ["MODELBOT_TEMPLATE_HOME"])


def test_answers_given_with_data_reach_every_file(tmp_path):
    code, out, err = modelbot(
        "new", "revenue.v2", str(tmp_path / "rev"), "--defaults", "--data", "kind=regression", "--data", "metric=mae",
        "--data", "label=revenue", "--data", "min_improvement=0.5", "--data", "test_size=0.3",
        "--data", "schedule=0 4 * * 1", "--data", "channel=C0REVENUE", "--data", "owners=U0ALICE U0BOB",
        "--data", "oncall=S0ONCALL", "--data", "serving_vcpu=4", "--data", "serving_memory_gib=16",
        "--data", "region=eu-west-1", "--data", "training_memory_gib=64", "--data", "module=revenue_model")
    assert code == 0, err
    package = tmp_path / "rev"
    model = load_registry(package / "models.toml").get("revenue.v2")
    assert (model.metric, model.direction, model.channel, model.owners, model.oncall, model.region) == (
        "mae", "minimize", "C0REVENUE", ("U0ALICE", "U0BOB"), "S0ONCALL", "eu-west-1")
    assert (model.vcpu, model.memory_gib, model.endpoint, model.dag_id) == (4, 16, "revenue-v2-prod",
                                                                            "revenue.v2_pipeline")
    assert (model.pipeline.label, model.pipeline.min_improvement, model.pipeline.schedule) == ("revenue", 0.5,
                                                                                               "0 4 * * 1")
    assert model.pipeline.instance_type == "ml.m5.xlarge"  # the smallest m5 with 4 vCPU and 16 GiB
    # A name with a '.' is a quoted TOML key, not a nested table.
    assert '[models."revenue.v2".pipeline]' in (package / "models.toml").read_text()
    source = (package / "revenue_model.py").read_text()
    assert "TEST_SIZE = 0.3" in source and 'LABEL = "revenue"' in source and '"maximum": 1' not in source.split(
        "RESPONSE_SCHEMA =")[1]
    assert "64 GiB" in (package / "models.toml").read_text()  # training needs, said where the workers are sized
    assert "Still placeholders" in out and "channel" not in out.split("Still placeholders")[1].split("owners")[0]
    pyproject = tomllib.loads((package / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["py-modules"] == ["revenue_model"]
    assert "modelbot[app]" in pyproject["project"]["optional-dependencies"]["test"]


def test_the_entry_goes_into_a_shared_models_file_checked_first(tmp_path):
    shared = tmp_path / "models.toml"
    shared.write_text(SHARED)
    code, out, err = modelbot("new", "fraud", str(tmp_path / "fraud"), "--defaults", "--models-file", str(shared),
                              *REAL)
    assert code == 0, err
    text = shared.read_text()
    assert text.startswith(SHARED)  # appended, nothing of the file rewritten
    registry = load_registry(shared)
    fraud = registry.get("fraud")
    assert fraud.region == "eu-west-1"  # the shared file's default region
    assert fraud.pipeline.artifacts == "s3://team-ml-artifacts/fraud"  # the bucket its other models use
    assert registry.get("churn") is not None
    package = tmp_path / "fraud"
    assert not (package / "models.toml").exists()  # one entry, one place
    assert "../models.toml" in (package / "tests" / "test_pipeline_check.py").read_text()
    assert yaml.safe_load((package / ".copier-answers.yml").read_text())["models_file"] == "../models.toml"
    assert "Its entry was added to" in out


@pytest.mark.parametrize("extra,says", [
    (["--data", "endpoint=churn-prod"], "endpoint 'churn-prod' is model 'churn''s"),
    (["--data", "dag_id=churn_pipeline"], "dag_id 'churn_pipeline' is model 'churn''s"),
    ([], "give real values for channel (C0CHANGEME)"),
])
def test_a_shared_models_file_is_never_left_broken_or_given_placeholders(tmp_path, extra, says):
    shared = tmp_path / "models.toml"
    shared.write_text(SHARED)
    real = REAL if extra else []
    code, _, err = modelbot("new", "fraud", str(tmp_path / "fraud"), "--defaults", "--models-file", str(shared),
                            *real, *extra)
    assert code == 2 and says in err, err
    assert shared.read_text() == SHARED
    assert not (tmp_path / "fraud").exists() and leftovers(tmp_path) == []


def test_a_name_the_shared_file_has_or_a_broken_shared_file_is_refused(tmp_path):
    shared = tmp_path / "models.toml"
    shared.write_text(SHARED)
    code, _, err = modelbot("new", "churn", str(tmp_path / "churn"), "--defaults", "--models-file", str(shared))
    assert code == 2 and "already has a model 'churn'" in err
    shared.write_text(SHARED.replace('channel = "C0CHURN"', 'channel = "general"'))
    code, _, err = modelbot("new", "fraud", str(tmp_path / "fraud"), "--defaults", "--models-file", str(shared))
    assert code == 2 and "does not load today" in err and "'general' is not a Slack channel ID" in err
    assert not (tmp_path / "churn").exists() and not (tmp_path / "fraud").exists()


@pytest.mark.parametrize("argv,says", [
    (["new", "churn v2", "DIR", "--defaults"], "is not a model name: letters, digits"),
    (["new", "fraud", "DIR", "--defaults", "--data", "channel=general"],
     "Validation error for question 'channel': 'general' is not a Slack channel ID"),
    (["new", "fraud", "DIR", "--defaults", "--data", "test_size=1.2"], "between 0 and 1"),
    (["new", "fraud", "DIR", "--defaults", "--data", "kind=regression", "--data", "metric=auc"],
     "Invalid choice for 'metric': 'auc' is not in ['rmse', 'mae', 'r2']"),
    (["new", "fraud", "DIR", "--defaults", "--data", "serving_memory_gib=64", "--data",
      "serving_instance_type=ml.m5.large"], "ml.m5.large has 2 vCPU, 8 GiB; serving needs at least 1 vCPU, 64 GiB"),
    (["new", "fraud", "DIR", "--defaults", "--data", "chanel=C0X"], "no such question (did you mean 'channel'?)"),
    (["new", "fraud", "DIR", "--defaults", "--data", "channel"], "is not key=value"),
    (["new", "fraud", "DIR"], "no terminal to ask the questions on: pass --defaults"),
])
def test_a_bad_name_or_answer_is_refused_naming_the_rule_and_nothing_is_written(tmp_path, argv, says):
    argv = [str(tmp_path / "pkg") if a == "DIR" else a for a in argv]
    code, out, err = modelbot(*argv)
    assert code == 2, out
    assert says in err
    assert not (tmp_path / "pkg").exists() and leftovers(tmp_path) == []


def test_a_non_empty_folder_is_refused_unless_forced(tmp_path, monkeypatch):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, _, err = modelbot("new", "fraud", str(folder), "--defaults")
    assert code == 2 and "is not empty (notes.txt)" in err and "--force" in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    code, _, err = modelbot("new", "fraud", str(folder), "--defaults", "--force")
    assert code == 0, err
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "fraud_model.py").is_file()
    # An empty folder is fine without --force, also as `.`: the folder stays the one the shell is in.
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    monkeypatch.chdir(empty)
    assert modelbot("new", "fraud", ".", "--defaults")[0] == 0
    assert empty.stat().st_ino == inode and (empty / "fraud_model.py").is_file() and leftovers(empty) == []


def test_a_failure_at_the_last_step_takes_the_new_package_back(tmp_path, monkeypatch):
    """The package is moved into place, then the shared file is replaced: if that fails, the package goes too."""
    shared = tmp_path / "models.toml"
    shared.write_text(SHARED)

    replace = os.replace

    def refuse_the_models_file(src, dst):
        if Path(dst) == shared:
            raise PermissionError(f"read-only: {dst}")
        return replace(src, dst)

    monkeypatch.setattr(service.os, "replace", refuse_the_models_file)
    with pytest.raises(PermissionError):
        service.new_package("fraud", tmp_path / "fraud", service.parse_data(REAL[1::2]), defaults=True,
                            models_file=shared)
    assert shared.read_text() == SHARED
    assert not (tmp_path / "fraud").exists() and leftovers(tmp_path) == []
