"""Building and running real images in tests: whether a Docker daemon answers, base images made from Debian's
packages (no registry is reachable on this project's machines), and the wheels an offline build installs from.

Used by the serving image's test (tests/serving/test_image.py) and modelbot's own image and compose test
(tests/deploy/). Both take minutes, so each runs from its own make target with MODELBOT_IMAGE_TEST=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_BASE = "modelbot-test-base:bookworm"
DEBIAN_PACKAGES = "python3,python3-venv,ca-certificates"


def docker_answers() -> str | None:
    """None when a Docker daemon answers, else why not (a skip reason)."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer `docker info` in 20 s"
    return None if proc.returncode == 0 else f"no Docker daemon answers: {proc.stderr.strip()[:200]}"


def image_test_skip() -> pytest.MarkDecorator | None:
    """The skip mark for a module of image tests: they run only from their make target, with a daemon."""
    if os.environ.get("MODELBOT_IMAGE_TEST") != "1":
        return pytest.mark.skip(reason="builds and runs Docker images (minutes): run `make serving-image-test` or "
                                       "`make image-test`")
    why = docker_answers()
    return pytest.mark.skip(reason=why) if why else None


def sh(*args: str, timeout: float = 900, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def debian_image(tmp: Path, tag: str, packages: str) -> str:
    """A bookworm minbase image with `packages`, made with mmdebstrap and `docker import` (kept for later runs)."""
    if sh("docker", "image", "inspect", tag, check=False).returncode == 0:
        return tag
    if shutil.which("mmdebstrap") is None:
        pytest.skip(f"no base image: {tag} is absent and mmdebstrap is not installed to make it "
                    "(apt-get install mmdebstrap), nor is MODELBOT_IMAGE_BASE set")
    tarball = tmp / f"{tag.replace(':', '-').replace('/', '-')}.tar"
    sh("mmdebstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(tarball))
    sh("docker", "import", str(tarball), tag)
    tarball.unlink()
    return tag


def base_image(tmp: Path) -> str:
    """MODELBOT_IMAGE_BASE (e.g. python:3.11-slim where a registry is reachable), else Debian's python3."""
    return os.environ.get("MODELBOT_IMAGE_BASE") or debian_image(tmp, DEBIAN_BASE, DEBIAN_PACKAGES)


def download_wheels(path: Path, *requirements: str) -> Path:
    """Every wheel `requirements` need, beside them in `path`, pinned by constraints.txt: an offline build's index."""
    sh(sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(path), "-c", str(ROOT / "constraints.txt"),
       *requirements)
    return path
