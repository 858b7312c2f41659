"""`modelbot new` and `modelbot update`: a model package rendered from modelbot's template with Copier, and
later brought up to date with it.

Nothing is half-written: the package is rendered into a temporary folder (beside DIR, or inside it when it
exists) and moved into place only when every answer passed and its models-file entry loads with modelbot's own
loader; an entry for a shared models file is checked together with the file's other models and written by an
atomic replace, last.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import copier
import yaml
from copier.errors import CopierError, UserMessageError
from plumbum import ProcessExecutionError

from bot.registry import Registry, RegistryError, load_registry
from bot.scaffold import answers, git, sizing, template_repo
from bot.scaffold.template_repo import TemplateRepoError

ANSWERS_FILE = ".copier-answers.yml"
ENTRY_FILE = "models.toml"  # the template renders the model's entry here


class ScaffoldError(Exception):
    """Nothing was written (or, for an update, nothing was changed); the message says why."""

    usage = False  # True: the input was wrong (exit status 2), not the machine


class Refused(ScaffoldError):
    usage = True


@dataclass
class Made:
    name: str
    directory: Path
    tag: str
    template: Path
    answers: dict[str, Any]
    instance: sizing.Choice
    models_file: Path | None  # the shared models file the entry was added to; None: the package's own
    git: str  # "initialised" (first commit made), "staged" (no git identity to commit with), "inside" a repository
    placeholders: list[str] = field(default_factory=list)


@dataclass
class Updated:
    directory: Path
    old: str
    new: str
    changed: list[str]
    conflicts: list[str]


# ---- the questions ----------------------------------------------------------------------------------------------

def questions(template: Path = template_repo.PACKAGED) -> dict[str, dict]:
    config = yaml.safe_load((template / "copier.yml").read_text(encoding="utf-8"))
    return {k: v for k, v in config.items() if not k.startswith("_")}


def parse_data(pairs: list[str], template: Path = template_repo.PACKAGED) -> dict[str, str]:
    """--data key=value pairs, each key one of the template's questions."""
    known = questions(template)
    data: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise Refused(f"--data {pair!r} is not key=value")
        if key not in known or known[key].get("when") is False:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the questions are: " + ", ".join(
                k for k, v in known.items() if v.get("when") is not False)
            raise Refused(f"--data {key}: no such question ({hint})")
        data[key] = value
    return data


# ---- the destination -----------------------------------------------------------------------------------------------

def _check_destination(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise Refused(f"{directory} is a file, not a folder; nothing was written")
    if directory.is_dir():
        entries = sorted(p.name for p in directory.iterdir())
        if entries and not force:
            shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
            raise Refused(f"{directory} is not empty ({shown}); pick an empty or new folder, or pass --force to "
                          "write the package over what is there")
        where = directory
    else:
        where = directory.parent
        if not where.is_dir():
            raise Refused(f"{where} does not exist; nothing was written")
    if not os.access(where, os.W_OK):
        raise Refused(f"{where} is not writable; nothing was written")


def _staging_folder(directory: Path) -> Path:
    """Beside a new DIR (renamed into place in one step), or inside an existing one (its entries then moved up,
    so a DIR that is someone's current folder stays that folder)."""
    where = directory if directory.is_dir() else directory.parent
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.modelbot-new.", dir=where))
    staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would become the package's
    return staging


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        return git.run(cwd, *args, check=check)
    except git.GitError as exc:
        raise ScaffoldError(str(exc)) from None


def _enclosing_repository(directory: Path) -> bool:
    probe = directory if directory.is_dir() else directory.parent
    return _git(probe, "rev-parse", "--show-toplevel", check=False).returncode == 0


def _initialise_git(staging: Path, name: str, tag: str) -> str:
    """A repository with the package as its first commit: `copier update` merges into a git-tracked package."""
    _git(staging, "init", "--quiet")
    _git(staging, "add", "--all")
    done = _git(staging, "commit", "--quiet", "-m", f"{name}: a model package from modelbot's template {tag}",
                check=False)
    # No git identity configured: the files stay staged for the data scientist's own first commit.
    return "initialised" if done.returncode == 0 else "staged"


def _move_into_place(staging: Path, directory: Path) -> list[Path]:
    """Moves the rendered package into DIR; returns what did not exist before, to take back if the models file
    cannot be written (with --force, files the package overwrote stay overwritten)."""
    if not directory.exists():
        os.rename(staging, directory)
        return [directory]
    created = []
    for entry in sorted(staging.iterdir()):
        target = directory / entry.name
        if not target.exists():
            os.rename(entry, target)
            created.append(target)
        elif entry.is_dir() and target.is_dir():
            shutil.copytree(entry, target, dirs_exist_ok=True)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    return created


def _take_back(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# ---- the shared models file ----------------------------------------------------------------------------------------

@dataclass
class SharedFile:
    path: Path
    text: str
    registry: Registry

    def existing(self) -> answers.Existing:
        models = self.registry.models.values()
        return answers.Existing(
            path=str(self.path), names=frozenset(self.registry.models),
            dag_ids={m.dag_id: m.name for m in models if m.dag_id},
            endpoints={m.endpoint: m.name for m in models if m.endpoint})

    def suggested(self, name: str) -> dict[str, str]:
        """Defaults the file's other models suggest: its region, their artifacts bucket."""
        found = {"region": self.registry.defaults.region}
        for model in self.registry.models.values():
            if model.pipeline is not None:
                bucket = model.pipeline.artifacts.split("/")[2]
                found["artifacts"] = f"s3://{bucket}/{name}"
                break
        return found


def _shared_file(path: Path) -> SharedFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Refused(f"--models-file {path}: no such file (leave --models-file out to write the entry into the "
                      "package's own models.toml)") from None
    except OSError as exc:
        raise Refused(f"--models-file {path} cannot be read: {exc}") from None
    try:
        registry = load_registry(path)
    except RegistryError as exc:
        raise Refused(f"--models-file {path} does not load today, so nothing is added to it:\n{exc}") from None
    return SharedFile(path, text, registry)


def _combined(shared: SharedFile, entry: str) -> Path:
    """The shared file with the entry appended, written beside it and checked with modelbot's loader."""
    text = shared.text.rstrip("\n") + "\n\n" + entry.strip("\n") + "\n"
    handle, name = tempfile.mkstemp(prefix=f".{shared.path.name}.", suffix=".new", dir=shared.path.parent)
    candidate = Path(name)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    try:
        shutil.copymode(shared.path, candidate)
        load_registry(candidate)
    except RegistryError as exc:
        candidate.unlink(missing_ok=True)
        raise Refused(f"the new entry would break {shared.path}, so nothing was written:\n"
                      + str(exc).replace(str(candidate), str(shared.path))) from None
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    return candidate


def _placeholders(given: dict[str, Any]) -> list[str]:
    found = []
    if given.get("channel") == answers.PLACEHOLDER_CHANNEL:
        found.append(f"channel ({answers.PLACEHOLDER_CHANNEL}): the Slack channel ID of the model's runs")
    if answers.PLACEHOLDER_ACCOUNT in str(given.get("image", "")):
        found.append(f"image ({given.get('image')}): your registry's repository for the serving image")
    if not answers.slack_ids(given.get("owners")):
        found.append("owners (none): Slack user IDs who may retrain, promote and roll back")
    return found


# ---- modelbot new -----------------------------------------------------------------------------------------------

def _copier_failure(exc: BaseException, outcome: str = "nothing was written") -> ScaffoldError:
    if isinstance(exc, KeyboardInterrupt):
        return Refused(f"stopped; {outcome}")
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    if isinstance(exc, (ValueError, TypeError)) or "Validation error" in text or "Invalid choice" in text:
        return Refused(f"{text}; {outcome}")
    return ScaffoldError(f"Copier could not render the template: {text}; {outcome}")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def src_path_for(repo: Path) -> str:
    """The template repository as recorded in `_src_path`: under the home folder as ~/..., so the package
    updates from another account or machine with the same layout."""
    try:
        return "~/" + repo.relative_to(Path.home()).as_posix()
    except ValueError:
        return repo.as_posix()


def _render(published: template_repo.Published, staging: Path, name: str, data: dict[str, str],
            user_defaults: dict[str, str], defaults: bool) -> dict[str, Any]:
    """The template rendered into `staging` (questions asked unless `defaults`); the answers recorded."""
    try:
        copier.run_copy(src_path_for(published.path), staging, data={**data, "model_name": name},
                        user_defaults=user_defaults, defaults=defaults, unsafe=True, vcs_ref=published.tag,
                        quiet=True, overwrite=True, cleanup_on_error=False)
    except (CopierError, ValueError, TypeError, KeyboardInterrupt, ProcessExecutionError) as exc:
        raise _copier_failure(exc) from None
    # The answers that count are the ones recorded for `copier update`.
    return {k: v for k, v in read_answers(staging).items() if not k.startswith("_")}


def _checked_entry(staging: Path, given: dict[str, Any], shared: SharedFile | None) -> Path | None:
    """Loads the rendered entry with modelbot's loader; for a shared file, returns that file with the entry
    appended, written beside it, and takes the package's copy away."""
    entry_path = staging / ENTRY_FILE
    if shared is None:
        try:
            load_registry(entry_path)
        except RegistryError as exc:
            raise Refused(f"the models-file entry does not load:\n{exc}\nnothing was written") from None
        return None
    placeholders = [p for p in _placeholders(given) if not p.startswith("owners")]
    if placeholders:
        raise Refused(f"{shared.path} is the models file modelbot acts on: give real values for "
                      + "; ".join(placeholders) + " (--data KEY=VALUE); nothing was written")
    candidate = _combined(shared, entry_path.read_text(encoding="utf-8"))
    # The package keeps no copy: the shared file is the one place the entry lives (and `copier update` leaves
    # a file the package deleted deleted).
    entry_path.unlink()
    return candidate


def _replace_shared(shared: SharedFile, candidate: Path) -> None:
    if shared.path.read_text(encoding="utf-8") != shared.text:
        raise Refused(f"{shared.path} changed while the package was made; run modelbot new again")
    os.replace(candidate, shared.path)


def new_package(name: str, directory: str | Path, data: dict[str, str] | None = None, *, defaults: bool = False,
                models_file: str | Path | None = None, force: bool = False) -> Made:
    directory = Path(directory).expanduser().absolute()
    data = dict(data or {})
    if "model_name" in data and data["model_name"] != name:
        raise Refused(f"--data model_name={data['model_name']} differs from NAME {name!r}; give the name once")
    problem = answers.model_name(name, {})
    if problem:
        raise Refused(f"{problem}; nothing was written")
    _check_destination(directory, force)
    shared = _shared_file(Path(models_file).expanduser().absolute()) if models_file else None
    user_defaults: dict[str, str] = {}
    existing = answers.Existing()
    if shared is not None:
        existing = shared.existing()
        if name in existing.names:
            raise Refused(f"{shared.path} already has a model {name!r}; pick another name")
        user_defaults = shared.suggested(name)
        data["models_file"] = os.path.relpath(shared.path, directory)
    try:
        published = template_repo.publish()
    except TemplateRepoError as exc:
        raise ScaffoldError(f"{exc}; nothing was written") from None

    staging = _staging_folder(directory)
    token = answers.EXISTING.set(existing)
    candidate: Path | None = None
    try:
        given = _render(published, staging, name, data, user_defaults, defaults)
        candidate = _checked_entry(staging, given, shared)
        git_state = "inside" if _enclosing_repository(directory) else _initialise_git(staging, name, published.tag)
        created = _move_into_place(staging, directory)
        if candidate is not None:
            try:
                _replace_shared(shared, candidate)
                candidate = None
            except BaseException:
                _take_back(created)  # the entry could not be added: the package goes too
                raise
    finally:
        answers.EXISTING.reset(token)
        if candidate is not None:
            candidate.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return Made(name=name, directory=directory, tag=published.tag, template=published.path, answers=given,
                instance=sizing.choose(given["serving_vcpu"], given["serving_memory_gib"], given["region"]),
                models_file=shared.path if shared else None, git=git_state, placeholders=_placeholders(given))


# ---- modelbot update ----------------------------------------------------------------------------------------------

def read_answers(directory: Path) -> dict[str, Any]:
    path = directory / ANSWERS_FILE
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Refused(f"{directory} has no {ANSWERS_FILE}: it was not made by `modelbot new`") from None
    except yaml.YAMLError as exc:
        raise Refused(f"{path} is not valid YAML: {exc}") from None
    return loaded if isinstance(loaded, dict) else {}


def _conflicts(directory: Path) -> list[str]:
    found = []
    for path in sorted(directory.rglob("*")):
        if ".git" in path.parts or not path.is_file():
            continue
        if path.suffix == ".rej":
            found.append(str(path.relative_to(directory)))
            continue
        try:
            if "<<<<<<< before updating" in path.read_text(encoding="utf-8", errors="ignore"):
                found.append(str(path.relative_to(directory)))
        except OSError:
            continue
    return found


def update_package(directory: str | Path, data: dict[str, str] | None = None) -> Updated:
    """Publish the template this modelbot carries, then `copier update` the package to it."""
    directory = Path(directory).expanduser().absolute()
    before = read_answers(directory)
    old, src = str(before.get("_commit", "")), str(before.get("_src_path", ""))
    try:
        published = template_repo.publish()
    except TemplateRepoError as exc:
        raise ScaffoldError(f"{exc}; the package was not changed") from None
    # Copier renders the package's own version from `_src_path` to find what the data scientist changed.
    followed = Path(src).expanduser().absolute()
    if followed != published.path.absolute():
        raise Refused(f"{directory} follows the template repository {src}, not {published.path}: set "
                      f"{template_repo.HOME_ENV}={src} (or update where that repository is); the package was not "
                      "changed")
    if not template_repo.has_version(published.path, old):
        raise ScaffoldError(f"the template version {old or '(none recorded)'} {directory.name} was made from is "
                            f"not in {published.path} (it was made where another template repository was); update "
                            "it there, or copy that repository here (docs/new-model.md, 'Updating'); the package "
                            "was not changed")
    if old == published.tag and not data:
        return Updated(directory, old, published.tag, [], [])
    try:
        copier.run_update(directory, data=dict(data or {}), vcs_ref=published.tag, unsafe=True, overwrite=True,
                          skip_answered=True, defaults=not sys.stdin.isatty(), quiet=True)
    except UserMessageError as exc:
        raise Refused(f"{directory}: {str(exc).strip().rstrip('.')}; the package was not changed") from None
    except (CopierError, ValueError, KeyboardInterrupt, ProcessExecutionError) as exc:
        raise _copier_failure(exc, "`git status` shows anything it changed, `git checkout -- .` takes it back"
                              ) from None
    status = _git(directory, "status", "--porcelain", "--", ".", check=False).stdout.splitlines()
    changed = sorted(line[3:] for line in status if line.strip())
    return Updated(directory, old, published.tag, changed, _conflicts(directory))
