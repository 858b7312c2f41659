"""The docs site builds with --strict: a broken link or anchor, a nav entry without its page, or a gap the
references' generator reports (docs/hooks.py) fails the build, so it fails `make test`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.harness import ROOT


def test_the_site_builds_strictly_with_every_reference_page(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # Material's banner, not ours
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    environment = (site / "reference" / "environment.html").read_text()
    for name in ("SLACK_BOT_TOKEN", "MODELBOT_ROLLOUT_TICK_SECONDS", "SAGEMAKER_BIND_TO_PORT", "MODELBOT_SANDBOX_DIR"):
        assert f"<code>{name}</code>" in environment, name
    models_file = (site / "reference" / "models-file.html").read_text()
    assert "<code>latency_margin</code>" in models_file and "<code>target_invocations_per_instance</code>" in models_file
    commands = (site / "reference" / "commands.html").read_text()
    assert "<code>/model rollback &lt;model&gt; [reason]</code>" in commands
    for page in ("index.html", "rollouts.html", "operations.html", "benchmarks.html", "architecture.html"):
        assert (site / page).is_file(), page


def test_every_link_in_the_readme_reaches_a_file():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing
