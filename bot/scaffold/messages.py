"""What `modelbot new` and `modelbot update` say, for a data scientist at a terminal."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from bot.scaffold.service import Made, Updated

GIT_NOTES = {
    "initialised": "a git repository with the package as its first commit (`modelbot update` merges into it)",
    "staged": "a git repository with every file staged; git has no user name here, so make the first commit "
              "yourself (`modelbot update` needs a committed package)",
    "inside": "inside your existing git repository: commit the package (`modelbot update` needs it committed)",
}


def _where(path: Path) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path)


def made(m: Made) -> str:
    a = m.answers
    module = a.get("module", "?")
    files = [
        (f"{module}.py", "your three functions, FEATURES and the schemas: start here"),
        ("tests/", "output shapes, schemas, a property test, `modelbot pipeline check`"),
        ("pyproject.toml", "the package's dependencies and its test extra"),
        ("Dockerfile", "the serving image (modelbot-serve)"),
        (".github/workflows/", "CI: the tests and the pipeline check"),
        ("README.md", "which files to edit, and how"),
    ]
    if m.models_file is None:
        files.insert(5, ("models.toml", "the model's entry in modelbot's models file"))
    width = max(len(f) for f, _ in files)
    lines = [f"Made model package {m.name} in {_where(m.directory)} (modelbot's model template {m.tag}):"]
    lines += [f"  {name:<{width}}  {what}" for name, what in files]
    if m.models_file is not None:
        lines.append(f"Its entry was added to {_where(m.models_file)} (checked with modelbot's loader).")
    chosen = a.get("serving_instance_type")
    if chosen == m.instance.instance_type:
        lines.append(f"Serving instance: {m.instance.why}.")
    else:
        lines.append(f"Serving instance: {chosen}, as answered (suggested: {m.instance.why}).")
    lines.append(f"Git: {GIT_NOTES.get(m.git, m.git)}.")
    if m.placeholders:
        lines.append("Still placeholders (fine for trying it out; set them before the model is registered):")
        lines += [f"  - {p}" for p in m.placeholders]
    lines += ["Next:", f"  cd {shlex.quote(_where(m.directory))}", "  pip install -e '.[test]'", "  pytest"]
    return "\n".join(lines)


def updated(u: Updated) -> str:
    if u.old == u.new and not u.changed:
        return f"{_where(u.directory)} already follows modelbot's model template {u.new}; nothing to do."
    lines = [f"Updated {_where(u.directory)} from template {u.old} to {u.new}."]
    if u.changed:
        lines.append("Changed (review with `git diff`, then commit):")
        lines += [f"  {path}" for path in u.changed]
    if u.conflicts:
        lines.append("Conflicts between your edits and the template's, marked in the files (`<<<<<<< before "
                     "updating` ... `>>>>>>> after updating`): resolve them, run the tests, commit:")
        lines += [f"  {path}" for path in u.conflicts]
    return "\n".join(lines)
