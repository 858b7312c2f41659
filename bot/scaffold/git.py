"""git, as `modelbot new` and the template repository run it: with a timeout, and a failure that says which
command failed where (Copier itself needs git too: the template's versions are git tags)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TIMEOUT = 60


class GitError(Exception):
    pass


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                              env={**os.environ, **(env or {})})
    except FileNotFoundError:
        raise GitError("git is not installed; Copier needs it for the model template's versions") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} in {cwd} took over {TIMEOUT} s") from None
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip() or done.stdout.strip()}")
    return done
