"""Where the model template comes from for Copier, and how it is versioned.

The template ships inside the modelbot package (bot/scaffold/template, package data), where it has no git
history of its own, and `copier update` needs one: it re-renders the version a package was made from and the
newest one, and merges the difference into the package. So modelbot publishes the template it carries into a
git repository on this machine, the template repository:

- one commit per distinct template content, tagged with the modelbot version that carried it (`v0.1.0`; a
  template edited without a version change gets `v0.1.0.post1`, `.post2`, ...: PEP 440 keeps them in order);
- a package's `.copier-answers.yml` records `_src_path` (this repository) and `_commit` (its tag), so plain
  `copier update --trust` works too once the newer template is published; `modelbot new` publishes on every
  run (a no-op when nothing changed);
- the place is MODELBOT_TEMPLATE_HOME, default ~/.local/share/modelbot/model-template (platformdirs); a team
  can share one, or push it to a git server and render from there (`copier copy URL`).

Commits are made with modelbot's own identity, so no git configuration is needed.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterator

import platformdirs
from packaging.version import InvalidVersion, Version

from bot.scaffold import git

HOME_ENV = "MODELBOT_TEMPLATE_HOME"
PACKAGED = Path(__file__).resolve().parent / "template"
IDENTITY = {"GIT_AUTHOR_NAME": "modelbot", "GIT_AUTHOR_EMAIL": "modelbot@localhost",
            "GIT_COMMITTER_NAME": "modelbot", "GIT_COMMITTER_EMAIL": "modelbot@localhost"}


class TemplateRepoError(Exception):
    """The template repository cannot be written or read; the message says where and why."""


@dataclass(frozen=True)
class Published:
    path: Path  # the repository: Copier's src_path
    tag: str  # the tag of the template modelbot carries: Copier's vcs_ref
    created: bool  # this call committed it


def home() -> Path:
    explicit = os.environ.get(HOME_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    return platformdirs.user_data_path("modelbot") / "model-template"


def modelbot_version() -> Version:
    try:
        return Version(metadata.version("modelbot"))
    except (metadata.PackageNotFoundError, InvalidVersion):
        return Version("0")


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, work_tree: Path | None = None) -> str:
    try:
        return git.run(repo, f"--git-dir={repo / '.git'}", f"--work-tree={work_tree or repo}", *args,
                       env={**IDENTITY, **(env or {})}).stdout.strip()
    except git.GitError as exc:
        raise TemplateRepoError(f"{exc}; the template was not published") from None


@contextmanager
def _locked(repo: Path) -> Iterator[None]:
    """One publisher at a time (two `modelbot new` at once would race for the same tag)."""
    with open(repo / ".git" / "modelbot-publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tags(repo: Path) -> dict[str, str]:
    """tag -> the tree it holds."""
    listed = _git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/tags")
    found = {}
    for line in listed.splitlines():
        tag = line.split()[0]
        found[tag] = _git(repo, "rev-parse", f"{tag}^{{tree}}")
    return found


def _next_tag(existing: set[str], version: Version) -> str:
    tag = f"v{version}"
    n = 0
    while tag in existing:
        n += 1
        tag = f"v{version.base_version}.post{n}" if version.post is None else f"v{version}.{n}"
    return tag


def publish(source: Path | None = None, repo: Path | None = None, version: Version | None = None) -> Published:
    """Commit the template at `source` (default: the one this modelbot carries) into the template repository
    unless a tag already holds it."""
    source = source or PACKAGED
    repo = repo or home()
    version = version or modelbot_version()
    if not (source / "copier.yml").is_file():
        raise TemplateRepoError(f"{source} holds no copier.yml: modelbot's template is missing from this install")
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TemplateRepoError(f"cannot create the template repository {repo}: {exc}; set {HOME_ENV}") from None
    if not (repo / ".git").is_dir():
        _git(repo, "init", "--quiet", "--initial-branch=main")
    with _locked(repo):
        # The template's tree, staged from the packaged files through a private index: the repository's own
        # working tree is only ever a checkout of its newest commit.
        with tempfile.TemporaryDirectory(prefix="modelbot-template-index.") as scratch:
            index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            _git(repo, "add", "--all", "--force", "--", ".", ":(exclude,glob)**/__pycache__/**", env=index,
                 work_tree=source)
            tree = _git(repo, "write-tree", env=index)
        tags = _tags(repo)
        same = sorted((t for t, t_tree in tags.items() if t_tree == tree), key=_tag_version)
        if same:
            return Published(repo, same[-1], created=False)
        parent = _git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") if tags else ""
        tag = _next_tag(set(tags), version)
        message = f"modelbot {version}: model template {tag}"
        commit = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message)
        _git(repo, "update-ref", "refs/heads/main", commit)
        _git(repo, "tag", "--annotate", tag, "-m", message, commit)
        _git(repo, "reset", "--hard", "--quiet", commit)  # the checkout follows: Copier reads a clean repository
        return Published(repo, tag, created=True)


def has_version(repo: Path, tag: str) -> bool:
    """Whether the template repository holds the version a package was made from (its `_commit`)."""
    if not (repo / ".git").is_dir():
        return False
    return git.run(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}", check=False).returncode == 0


def _tag_version(tag: str) -> Version:
    try:
        return Version(tag.lstrip("v"))
    except InvalidVersion:
        return Version("0")
