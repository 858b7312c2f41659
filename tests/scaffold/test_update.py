"""The template's versions, and a template change reaching a package through `copier update`: with
`modelbot update` (which publishes the template the installed modelbot carries first) and with Copier's own
command, the data scientist's edits kept, conflicts marked and said."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.scaffold import template_repo
from tests.scaffold.conftest import modelbot

MODULE_TEMPLATE = "project/{{ module }}.py.jinja"


@pytest.fixture
def own_home(tmp_path, monkeypatch) -> Path:
    """A template repository for this test alone: the changes it publishes must not reach other tests."""
    home = tmp_path / "template-home"
    monkeypatch.setenv(template_repo.HOME_ENV, str(home))
    return home


@pytest.fixture
def newer_template(tmp_path, monkeypatch):
    """change(edit) -> a copy of the packaged template, edited, standing in for the one a newer modelbot carries."""
    def change(edit) -> Path:
        copy = tmp_path / f"template-{len(list(tmp_path.glob('template-*')))}"
        shutil.copytree(template_repo.PACKAGED, copy, ignore=shutil.ignore_patterns("__pycache__"))
        edit(copy)
        monkeypatch.setattr(template_repo, "PACKAGED", copy)
        return copy

    return change


def git(package: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=package, check=True, capture_output=True, text=True).stdout


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_each_template_content_is_one_tagged_version(tmp_path):
    repo, source = tmp_path / "repo", tmp_path / "template"
    shutil.copytree(template_repo.PACKAGED, source)
    first = template_repo.publish(source, repo)
    again = template_repo.publish(source, repo)
    assert first.created and not again.created and again.tag == first.tag == f"v{template_repo.modelbot_version()}"
    replace_in(source / "project" / "README.md.jinja", "## Sizing", "## Sizing, revised")
    second = template_repo.publish(source, repo)
    assert second.created and second.tag == f"{first.tag}.post1"
    replace_in(source / "project" / "README.md.jinja", "## Sizing, revised", "## Sizing")
    back = template_repo.publish(source, repo)
    assert not back.created and back.tag == first.tag  # the content an older tag holds: that tag, no new commit
    log = subprocess.run(["git", "log", "--format=%D %s"], cwd=repo, capture_output=True, text=True).stdout
    assert log.splitlines()[0].startswith(f"HEAD -> main, tag: {second.tag}")
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""


def test_modelbot_update_merges_a_template_change_and_keeps_the_data_scientists_edits(tmp_path, own_home,
                                                                                       newer_template):
    package = tmp_path / "churn"
    assert modelbot("new", "churn", str(package), "--defaults")[0] == 0
    # The data scientist's work: the model's own code, and a line the template will change too.
    replace_in(package / "churn_model.py", "def train(frame", "# tuned by hand\ndef train(frame")
    replace_in(package / "README.md", "## Sizing", "## Sizing (our notes)")
    git(package, "commit", "-qam", "my changes")

    def edit(template: Path) -> None:
        replace_in(template / MODULE_TEMPLATE, "NUMERIC = [", "# numeric columns are standardised\nNUMERIC = [")
        replace_in(template / "project" / "README.md.jinja", "## Sizing", "## Sizing and cost")
        (template / "project" / "CHANGES.md").write_text("Template changes are listed here.\n")

    newer_template(edit)
    code, out, err = modelbot("update", str(package))
    assert code == 0, err
    assert "Updated churn from template v0.1.0 to v0.1.0.post1" in out.replace(str(package), "churn")
    module = (package / "churn_model.py").read_text()
    assert "# tuned by hand\ndef train(frame" in module  # kept
    assert "# numeric columns are standardised\nNUMERIC = [" in module  # arrived
    assert (package / "CHANGES.md").read_text() == "Template changes are listed here.\n"
    assert "Conflicts" in out and "  README.md" in out.split("Conflicts")[1]
    readme = (package / "README.md").read_text()
    assert "<<<<<<< before updating" in readme and "## Sizing (our notes)" in readme and "## Sizing and cost" in readme
    assert yaml.safe_load((package / ".copier-answers.yml").read_text())["_commit"] == "v0.1.0.post1"
    # Nothing committed for the data scientist: they review, resolve, commit.
    assert git(package, "log", "--format=%s").splitlines()[0] == "my changes"


def test_copiers_own_update_command_works_once_the_template_is_published(tmp_path, own_home, newer_template):
    package = tmp_path / "fraud"
    assert modelbot("new", "fraud", str(package), "--defaults")[0] == 0
    newer_template(lambda t: replace_in(t / "project" / "README.md.jinja", "## Sizing", "## Sizing and cost"))
    template_repo.publish()  # what any `modelbot new` or `modelbot update` does on this machine
    copier = Path(sys.executable).parent / "copier"
    done = subprocess.run([str(copier), "update", "--trust", "--skip-answered", "--defaults"], cwd=package,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "## Sizing and cost" in (package / "README.md").read_text()
    assert yaml.safe_load((package / ".copier-answers.yml").read_text())["_commit"] == "v0.1.0.post1"


def test_an_answer_changes_through_update_and_a_dirty_package_is_refused(tmp_path, own_home):
    package = tmp_path / "churn"
    assert modelbot("new", "churn", str(package), "--defaults")[0] == 0
    assert "already follows modelbot's model template" in modelbot("update", str(package))[1]
    (package / "scratch.py").write_text("x = 1\n")
    git(package, "add", "scratch.py")
    code, _, err = modelbot("update", str(package), "--data", "schedule=@daily")
    assert code == 2 and "dirty" in err and "not changed" in err
    git(package, "commit", "-qm", "scratch")
    code, out, err = modelbot("update", str(package), "--data", "schedule=@daily")
    assert code == 0, err
    assert 'schedule = "@daily"' in (package / "models.toml").read_text()
    assert "models.toml" in out
    git(package, "commit", "-qam", "daily")
    code, _, err = modelbot("update", str(package), "--data", "schedule=daily")
    assert code == 2 and "is not a cron expression" in err


def test_update_of_a_folder_modelbot_did_not_make_is_refused(tmp_path):
    code, _, err = modelbot("update", str(tmp_path))
    assert code == 2 and "has no .copier-answers.yml: it was not made by `modelbot new`" in err


def test_a_package_whose_template_version_is_not_here_is_refused_saying_where_it_is(tmp_path, own_home,
                                                                                     monkeypatch):
    package = tmp_path / "churn"
    assert modelbot("new", "churn", str(package), "--defaults")[0] == 0
    made_with = yaml.safe_load((package / ".copier-answers.yml").read_text())
    monkeypatch.setenv(template_repo.HOME_ENV, str(tmp_path / "another-home"))
    code, _, err = modelbot("update", str(package))
    assert code == 2 and f"follows the template repository {made_with['_src_path']}" in err
    assert f"{template_repo.HOME_ENV}={made_with['_src_path']}" in err
    monkeypatch.setenv(template_repo.HOME_ENV, str(own_home))
    # Made by an older modelbot on a machine whose template repository this one never saw.
    replace_in(package / ".copier-answers.yml", f"_commit: {made_with['_commit']}", "_commit: v0.0.9")
    git(package, "commit", "-qam", "older")
    code, _, err = modelbot("update", str(package))
    assert code == 1 and "the template version v0.0.9 churn was made from is not in" in err
    assert git(package, "status", "--porcelain") == ""
