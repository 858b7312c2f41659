"""Everything a user can set or type is documented: every /model subcommand and `modelbot` command has a page,
every models-file field and setting a one-line description, and every environment variable the code reads an
entry in the environment reference (docs/hooks.py generates the reference pages from the code)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest

from tests.harness import ROOT


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("modelbot_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_nothing_the_code_declares_or_reads_is_undocumented(hooks):
    assert hooks.undocumented() == []


def test_each_subcommand_is_explained_on_its_page(hooks):
    from handlers.commands.model import subcommands

    for name in subcommands():
        page = hooks.COMMAND_PAGES[name].split("#")[0]
        if page.startswith("reference/"):
            continue  # /model help: the commands reference itself
        text = (ROOT / "docs" / page).read_text()
        assert f"/model {name}" in text, f"docs/{page} does not explain /model {name}"


def test_every_page_the_references_link_to_exists(hooks):
    pages = [*hooks.COMMAND_PAGES.values(), *hooks.CLI_PAGES.values(), *hooks.SETTING_PAGES.values(),
             *(entry.page for entry in hooks.ENVIRONMENT.values())]
    generated = set(hooks.PAGES)
    missing = {p.split("#")[0] for p in pages if p.split("#")[0] not in generated
               and not (ROOT / "docs" / p.split("#")[0]).is_file()}
    assert not missing, missing


def test_the_scanner_finds_a_new_variable_and_reports_it(hooks, tmp_path):
    """The check can fail: a variable read in any of the ways the code reads them, and documented nowhere."""
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "knobs.py").write_text(textwrap.dedent('''
        import os
        KNOB_ENV = "MODELBOT_NEW_KNOB"
        A = os.environ.get(KNOB_ENV)
        B = os.getenv("MODELBOT_OTHER_KNOB", "1")
        C = "MODELBOT_THIRD_KNOB" in os.environ and os.environ["MODELBOT_THIRD_KNOB"]
        service = "s3"
        D = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")

        def settings(environ=None):
            env = os.environ if environ is None else environ
            return _int(env, "MODELBOT_FOURTH_KNOB", 3)

        def wsgi(environ, start_response):
            return environ.get("PATH_INFO")  # a WSGI environ, not the process's
    '''))
    reads = hooks.environment_reads(tmp_path)
    assert set(reads) == {"MODELBOT_NEW_KNOB", "MODELBOT_OTHER_KNOB", "MODELBOT_THIRD_KNOB",
                          "AWS_ENDPOINT_URL_<SERVICE>", "MODELBOT_FOURTH_KNOB"}, reads
    gaps = hooks.undocumented(reads)
    assert any(g.startswith("environment: MODELBOT_NEW_KNOB (read at bot/knobs.py:4)") for g in gaps), gaps
    assert any("MODELBOT_SNAPSHOT_RATE, which no code reads any more" in g for g in gaps), gaps
