"""`modelbot new` fixtures: a private template repository, a package rendered once per session, a venv where
that package is installed the way a data scientist installs it (editable, with its test extra, no network),
and a terminal to drive the questions through."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import sysconfig
import termios
import time
from pathlib import Path

import pytest

from bot import cli
from bot.scaffold import sizing

# Each test's environment: a template repository of the session's own (never the user's), git able to commit,
# and a database that does not exist (no cached prices) unless a test says otherwise.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Data Scientist", "GIT_AUTHOR_EMAIL": "ds@example.com",
                "GIT_COMMITTER_NAME": "Data Scientist", "GIT_COMMITTER_EMAIL": "ds@example.com"}


@pytest.fixture(scope="session")
def template_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("template-home")


def scaffold_environment(home: Path, scratch: Path) -> dict[str, str]:
    return {"MODELBOT_TEMPLATE_HOME": str(home), "DATABASE_URL": f"sqlite:///{scratch / 'no-such.db'}",
            **GIT_IDENTITY}


@pytest.fixture(autouse=True)
def scaffold_env(monkeypatch, template_home, tmp_path):
    for key, value in scaffold_environment(template_home, tmp_path).items():
        monkeypatch.setenv(key, value)
    sizing.forget()
    yield
    sizing.forget()


def modelbot(*argv: str) -> tuple[int, str, str]:
    """`modelbot ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def made(tmp_path_factory, template_home) -> tuple[Path, str]:
    """`modelbot new probe DIR --defaults`, rendered once: (the package, what modelbot new printed)."""
    scratch = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in scaffold_environment(template_home, scratch).items():
            mp.setenv(key, value)
        code, out, err = modelbot("new", "probe", str(scratch / "probe"), "--defaults")
    assert code == 0, err
    return scratch / "probe", out


@pytest.fixture(scope="session")
def package_venv(tmp_path_factory, made) -> Path:
    """A venv layered on this one (modelbot and the test tools are found, nothing is downloaded) with the made
    package installed as its README says: `pip install -e '.[test]'`. Returns its python."""
    package, _ = made
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "_modelbot_test_layer.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation",
                           "--disable-pip-version-check", "-e", ".[test]"],
                          cwd=package, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install -e '.[test]' failed:\n{done.stdout}\n{done.stderr}"
    return python


def run_generated_tests(python: Path, package: Path, *args: str) -> subprocess.CompletedProcess:
    """`pytest` in a generated package, as a data scientist runs it (modelbot's console scripts on PATH)."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([str(python), "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args], cwd=package,
                          env=env, capture_output=True, text=True, timeout=600)


def copy_package(package: Path, to: Path) -> Path:
    shutil.copytree(package, to, symlinks=True)
    return to


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]|\r")


class Terminal:
    """A program on a pseudo-terminal, as a person at a keyboard sees it (escape codes stripped)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]):
        self.master, slave = pty.openpty()
        # A wide terminal, so long help lines arrive whole; no cursor-position requests to answer.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 240, 0, 0))
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.seen = ""

    def expect(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.seen)
            if match:
                found, self.seen = self.seen[:match.end()], self.seen[match.end():]
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} on the terminal within {timeout} s; last output:\n"
                                     f"{self.seen[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the program ended
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"the program ended (status {self.proc.returncode}) before {pattern!r}; "
                                         f"last output:\n{self.seen[-2000:]}")
                self.seen += ANSI.sub("", chunk.decode("utf-8", errors="replace"))

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 60) -> int:
        """The exit status once the program ends by itself."""
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        if self.master is not None:
            os.close(self.master)
            self.master = None
