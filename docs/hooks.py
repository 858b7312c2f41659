"""The docs site's generated pages: the models-file, environment and command references, built from the code at
every `mkdocs build` (an MkDocs hook, mkdocs.yml `hooks:`), so they cannot drift from it.

Nothing generated is committed, so nothing generated can be stale. What the code cannot say is kept here, next to
the generator: a one-line meaning and a page for each environment variable read outside the Settings class
(`ENVIRONMENT`), and the page that explains each `/model` subcommand (`COMMAND_PAGES`). tests/docs/ fails when
the code reads a variable, declares a models-file field or a subcommand that has no entry, and when an entry names
something the code no longer has.

Run alone to print a page: `python docs/hooks.py environment` (or `models-file`, `commands`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import logging
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.hooks.modelbot")

# --- environment variables ------------------------------------------------------------------------------------

# Where the code that reads a variable runs, in the order the reference lists them: a variable read in several
# places is listed once, under the first group that reads it.
GROUPS = [
    ("app", "modelbot: the web process, the worker and the `modelbot` CLI", ("bot/", "handlers/", "jobs/", "charts/")),
    ("serving", "`modelbot-serve`: the model's container", ("serving/",)),
    ("dags", "The Airflow DAG files (on the Airflow workers)", ("dags/",)),
    ("sandbox", "The sandbox only (`make run` without Slack)", ("sandbox/",)),
    ("tests", "Tests and benchmarks only", ("tests/", "bench/")),
]
SCANNED = [prefix for _, _, prefixes in GROUPS for prefix in prefixes]
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9<>]+)+$|^PORT$")


@dataclasses.dataclass(frozen=True)
class Env:
    """A variable read outside bot/config.py's Settings: what the code cannot say about it."""

    default: str
    meaning: str
    page: str  # the docs page that explains it, e.g. "operations.md#the-worker"


# One line each; the page explains. `default` is what applies when the variable is unset.
ENVIRONMENT: dict[str, Env] = {
    # modelbot's own knobs, read where they are used
    "MODELBOT_ROLLOUT_TICK_SECONDS": Env("MODELBOT_JOB_INTERVAL_SECONDS", "the rollout controller's tick",
                                         "operations.md#the-worker"),
    "MODELBOT_JOB_LEASE_SECONDS": Env("30", "a job lease's time to live, renewed while the pass runs; a killed "
                                      "worker's jobs move on within it", "operations.md#the-worker"),
    "MODELBOT_WORKER_METRICS_PORT": Env("unset: none", "the worker serves its own GET /metrics on this port",
                                        "operations.md#metrics"),
    "MODELBOT_COMMAND_QUEUE": Env("32", "commands running or waiting after the ack; more: \"busy, try again in a "
                                  "minute\"", "status.md#many-models"),
    "MODELBOT_SNAPSHOT_CONCURRENCY": Env("8", "threads the endpoint snapshot job describes endpoints from",
                                         "status.md#the-endpoint-snapshot"),
    "MODELBOT_SNAPSHOT_RATE": Env("40", "SageMaker calls a second the snapshot makes, all threads together "
                                  "(halved on throttling)", "status.md#the-endpoint-snapshot"),
    "MODELBOT_PRICE_REFRESH_HOURS": Env("24", "age at which the price job refreshes a region; 0 turns it off",
                                        "pricing.md#keeping-prices-fresh"),
    "MODELBOT_PRICE_BULK_URL": Env("https://pricing.us-east-1.amazonaws.com", "base URL of the bulk price offer "
                                   "files", "pricing.md#where-the-prices-come-from"),
    "MODELBOT_PRICE_BULK_DEADLINE_SECONDS": Env("600", "the whole bulk price download's deadline",
                                                "pricing.md#where-the-prices-come-from"),
    "MODELBOT_QUALITY_INTERVAL_SECONDS": Env("300", "a model's quality is measured at most this often",
                                             "quality.md#turning-it-on"),
    "MODELBOT_PIPELINES_FILE": Env("the DAG file installed with modelbot (bot/pipelines/dags)", "the DAG file "
                                   "`modelbot pipeline check` runs the steps of", "pipelines.md#modelbot-pipeline-check"),
    "MODELBOT_TEMPLATE_HOME": Env("a folder under the user's home", "where `modelbot new` keeps the template's git "
                                  "repository", "new-model.md#updating-how-the-template-is-found-and-versioned"),
    "AWS_ENDPOINT_URL_<SERVICE>": Env("AWS's", "boto3's own per-service endpoint (AWS_ENDPOINT_URL_SAGEMAKER, "
                                      "_PRICING, ...): tests and the sandbox point them at local fakes",
                                      "development.md#what-stands-in-for-slack-aws-and-airflow"),
    "MODELBOT_CRASH_AT": Env("unset", "tests only: the worker exits as if killed at after_intent, after_aws or "
                             "after_post", "development.md#test-knobs"),
    # modelbot-serve
    "MODELBOT_MODEL_MODULE": Env("required", "the model module's import name (churn_model for churn_model.py)",
                                 "serving.md#run-it-locally"),
    "SM_MODEL_DIR": Env("/opt/ml/model", "where the model is: model.pkl, or the pipeline's model.tar.gz",
                        "serving.md#run-it-locally"),
    "SAGEMAKER_BIND_TO_PORT": Env("8080", "the port (--port overrides it)", "serving.md#run-it-locally"),
    "SAGEMAKER_MODEL_SERVER_WORKERS": Env("one per CPU the container may use", "worker processes",
                                          "serving.md#run-it-locally"),
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": Env("60", "seconds one predict may run; past it the worker is replaced",
                                          "serving.md#run-it-locally"),
    "MODELBOT_SERVE_THREADS": Env("4", "connections each worker serves at once (predict runs one at a time per "
                                  "worker)", "serving.md#run-it-locally"),
    "MODELBOT_SERVE_MAX_REQUEST_BYTES": Env("6291456", "larger request bodies are refused with 413, unread "
                                            "(SageMaker's 6 MB payload limit)", "serving.md#errors"),
    "MODELBOT_SERVE_FAILURE_FILE": Env("/opt/ml/output/failure", "where a start-up failure is written besides "
                                       "stderr, when its folder exists", "serving.md#when-it-cannot-start"),
    # the DAG files
    "DIAGNOSTICS_BUCKET": Env("unset: no diagnostics CSV", "the example DAG writes its diagnostics CSV to this "
                              "bucket", "retraining.md#the-example-dag"),
    # the sandbox
    "MODELBOT_SANDBOX_DIR": Env(".sandbox", "the sandbox's working folder (logs in run/)", "sandbox.md"),
    "MODELBOT_AIRFLOW_VENV": Env(".airflow-venv", "the venv Airflow 3.3.2 is installed into for the sandbox and "
                                "the tests", "sandbox.md"),
    "MODELBOT_SANDBOX_WORLD": Env("unset: the calm world", "the S3 object the sandbox's churn model reads its "
                                  "simulated world from", "sandbox.md"),
    # tests and benchmarks
    "TEST_DATABASE_URL": Env("unset: SQLite only", "a PostgreSQL URL: every store test runs on it too, each in a "
                             "database of its own", "development.md#test-knobs"),
    "BENCH_DATABASE_URL": Env("unset: SQLite", "the database bench/pricing.py writes to", "benchmarks.md"),
    "MODELBOT_SKIP_AIRFLOW": Env("unset", "1 skips the tests that start the real Airflow", "development.md#test-knobs"),
    "MODELBOT_FUZZ_EXAMPLES": Env("200", "examples per fuzz test (tests/faults/test_fuzz.py)",
                                  "development.md#test-knobs"),
    "MODELBOT_CHAOS_ITERATIONS": Env("5", "rollouts in the chaos test (`make chaos`: 50)", "development.md#test-knobs"),
    "MODELBOT_CHAOS_SEED": Env("random", "makes a chaos run repeatable", "development.md#test-knobs"),
    "MODELBOT_CHAOS_SETTLE_SECONDS": Env("3", "how long the chaos test keeps watching for late page resends "
                                         "(`make chaos`: 130)", "development.md#test-knobs"),
    "MODELBOT_FAULTS_WORKER_ROOT": Env("this checkout", "the checkout the fault tests run `python -m jobs` from: an "
                                       "older commit shows a test failing on the old design",
                                       "development.md#test-knobs"),
    "MODELBOT_SANDBOX_SCREENSHOTS": Env("unset", "a folder: the sandbox tests save their screenshots there "
                                        "(`docs` refreshes the docs' pictures)", "development.md#test-knobs"),
    "MODELBOT_IMAGE_TEST": Env("unset", "1 runs the Docker image tests (`make serving-image-test`, "
                               "`make image-test`)", "development.md#test-knobs"),
    "MODELBOT_IMAGE_BASE": Env("an image made from Debian's packages", "the base image the image tests build on, "
                               "e.g. python:3.11-slim where a registry is reachable", "development.md#test-knobs"),
}

# Read by modelbot's code but owned by another program: named in the reference, not explained.
FOREIGN_PREFIXES = ("AIRFLOW__", "PYTEST_")


def _module_constants(tree: ast.Module) -> dict[str, str]:
    found = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) and node.value is not None else []
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = value.value
    return found


def _name_of(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The variable name an expression spells: a string, a module constant, or an f-string (AWS_X_<SERVICE>)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.Name) and node.id in constants:
        text = constants[node.id]
    elif isinstance(node, ast.JoinedStr):
        text = "".join(part.value if isinstance(part, ast.Constant) else "<"
                       + (ast.unparse(part.value).split(".")[0].upper()) + ">" for part in node.values)
    else:
        return None
    return text if ENV_NAME.match(text) else None


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) \
        and node.value.id == "os"


def _env_aliases(function: ast.AST) -> set[str]:
    """Local names bound to os.environ in a function (`env = os.environ if environ is None else environ`)."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and any(_is_os_environ(n) for n in ast.walk(node.value)):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _reads(tree: ast.Module, constants: dict[str, str]) -> Iterable[tuple[str, int]]:
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in scopes:
        aliases = _env_aliases(scope) if scope is not tree else set()

        def environ(node: ast.AST) -> bool:
            return _is_os_environ(node) or (isinstance(node, ast.Name) and node.id in aliases)

        body = scope.body if scope is tree else [scope]
        for stmt in body:
            for node in ast.walk(stmt):
                if scope is tree and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                name = None
                if isinstance(node, ast.Call) and node.args:
                    func = node.func
                    if isinstance(func, ast.Attribute) and func.attr in ("get", "pop") and environ(func.value):
                        name = _name_of(node.args[0], constants)
                    elif (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                            isinstance(func, ast.Name) and func.id == "getenv"):
                        name = _name_of(node.args[0], constants)
                    elif any(isinstance(a, ast.Name) and (a.id in aliases or a.id == "environ" and aliases)
                             for a in node.args):
                        # a helper handed the environment and a name: _int(env, "SAGEMAKER_BIND_TO_PORT", 8080, ...)
                        name = next((n for n in (_name_of(a, constants) for a in node.args[1:]) if n), None)
                    elif isinstance(func, ast.Name) and func.id.endswith("_env"):
                        # a reader named for it: _positive_env(TICK_ENV, default)
                        name = _name_of(node.args[0], constants)
                elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and environ(node.value):
                    name = _name_of(node.slice, constants)
                elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In) \
                        and environ(node.comparators[0]):
                    name = _name_of(node.left, constants)
                if name:
                    yield name, node.lineno


@functools.lru_cache(maxsize=4)  # a build reads it twice: the reference page and the check
def environment_reads(root: Path = ROOT) -> dict[str, list[str]]:
    """Every environment variable the code reads by name, with the places (path:line) that read it."""
    reads: dict[str, list[str]] = {}
    for prefix in SCANNED:
        for path in sorted((root / prefix).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for name, line in _reads(tree, _module_constants(tree)):
                places = reads.setdefault(_pattern_of(name), [])
                if f"{rel}:{line}" not in places:
                    places.append(f"{rel}:{line}")
    return reads


def _pattern_of(name: str) -> str:
    """AWS_ENDPOINT_URL_SAGEMAKER is one case of AWS_ENDPOINT_URL_<SERVICE>: documented once, as the pattern."""
    for known in ENVIRONMENT:
        if "<" in known and re.fullmatch(re.sub(r"<[A-Z]+>", "[A-Z0-9_]+", re.escape(known).replace("\\<", "<")
                                                .replace("\\>", ">")), name):
            return known
    return name


def _group_of(places: list[str]) -> str:
    for key, _, prefixes in GROUPS:
        if any(place.startswith(prefixes) for place in places):
            return key
    return GROUPS[-1][0]


# --- rendering helpers ----------------------------------------------------------------------------------------

def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(_toml(v).strip("`") for v in value) + "]`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " or ".join(f'`"{a}"`' for a in args)
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                "SecretStr": "string (secret)"}.get(annotation.__name__, "table")
    return str(annotation)


def _rules(field) -> list[str]:
    """The field's constraints, read from its pydantic metadata (bounds, lengths, the pattern checks' words)."""
    rules = []
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    metadata = list(field.metadata)
    annotation = field.annotation
    pending = [annotation]
    while pending:  # Optional[...], tuple[...] and Annotated[...] all the way down
        arg = pending.pop()
        if typing.get_origin(arg) is typing.Annotated:
            metadata += list(arg.__metadata__)
        elif typing.get_origin(arg) in (typing.Union, types.UnionType, tuple, list):
            pending += [a for a in typing.get_args(arg) if a is not Ellipsis]
    for item in metadata:
        for attr, sign in words.items():
            if getattr(item, attr, None) is not None:
                rules.append(f"{sign} {getattr(item, attr)}")
        func = getattr(item, "func", None)
        for cell in getattr(func, "__closure__", None) or ():
            if isinstance(cell.cell_contents, str):
                rules.append(cell.cell_contents)
    return rules


# --- the models file ------------------------------------------------------------------------------------------

MODELS_FILE_INTRO = """\
# Models file

The models file (`MODELS_FILE`, default `models.toml`) registers every model modelbot runs: who owns it, where
its threads and pages go, its Airflow DAG and SageMaker endpoint, and how it rolls out. modelbot reads it at
start and refuses to start when it is wrong, naming the file, the model and the field, for example:

```
models.toml: model 'fraud', field 'direction': Input should be 'maximize' or 'minimize'
```

Unknown fields are refused too (with "did you mean"), two models may not share an `endpoint` or a `dag_id`, and
a model with a `[pipeline]` table also needs `dag_id`, `endpoint` and a `metric` the pipeline computes, with the
`direction` that metric has. The tables below are generated from the code that checks the file
(`bot/registry.py`), so they are always the rules it applies.

"""


def models_file_reference() -> str:
    from bot import registry

    tables = [
        ("[defaults]", registry.Defaults, "Fallbacks for every model."),
        ("[models.NAME]", registry.ModelSpec, "One table per model; NAME may hold letters, digits, `_`, `-` and `.`."),
        ("[models.NAME.rollout]", registry.RolloutSettings,
         "The gradual rollout: [Rollouts](../rollouts.md) and [the judgement](../judgement.md)."),
        ("[models.NAME.pipeline]", registry.PipelineSettings,
         "Optional: modelbot generates the model's DAG: [Pipelines](../pipelines.md)."),
        ("[models.NAME.quality]", registry.QualitySettings,
         "Optional: the metric measured in production: [Quality](../quality.md)."),
        ("[models.NAME.scaling]", registry.ScalingSettings,
         "Optional: autoscaling kept right through rollouts: [Scaling](../scaling.md)."),
    ]
    out = [MODELS_FILE_INTRO]
    for title, model, about in tables:
        out += [f"## `{title}`", "", about, "", "| field | type | default | rule | meaning |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, registry.BaseModel) or \
                    any(isinstance(a, type) and issubclass(a, registry.BaseModel)
                        for a in typing.get_args(field.annotation)):
                kind, default = "table", "—"
            else:
                kind = _type_name(field.annotation)
                default = "**required**" if field.is_required() else _toml(field.default)
            rules = ", ".join(_rules(field)) or "—"
            out.append(f"| `{name}` | {_cell(kind)} | {_cell(default)} | {_cell(rules)} | {_cell(field.description)} |")
        out.append("")
    example = (ROOT / "models.example.toml").read_text(encoding="utf-8")
    out += ["## A whole file", "", "`models.example.toml`, which modelbot's tests load:", "", "```toml",
            example.rstrip(), "```", ""]
    return "\n".join(out)


# --- the environment ------------------------------------------------------------------------------------------

# The page that explains each Settings field (bot/config.py).
SETTING_PAGES = {
    "SLACK_BOT_TOKEN": "connect.md#slack", "SLACK_SIGNING_SECRET": "connect.md#slack",
    "SLACK_APP_TOKEN": "connect.md#slack", "SLACK_API_URL": "connect.md#slack",
    "PORT": "operations.md#processes", "DATABASE_URL": "operations.md#the-database",
    "MODELS_FILE": "reference/models-file.md", "AIRFLOW_URL": "retraining.md#point-modelbot-at-an-airflow",
    "AIRFLOW_USERNAME": "retraining.md#point-modelbot-at-an-airflow",
    "AIRFLOW_PASSWORD": "retraining.md#point-modelbot-at-an-airflow",
    "AIRFLOW_TOKEN": "retraining.md#point-modelbot-at-an-airflow",
    "AIRFLOW_UI_URL": "retraining.md#point-modelbot-at-an-airflow",
    "AWS_REGION": "connect.md#aws", "AWS_ENDPOINT_URL": "connect.md#aws",
    "PAGERDUTY_ROUTING_KEY": "paging.md", "PAGERDUTY_EVENTS_URL": "paging.md",
    "MODELBOT_JOB_INTERVAL_SECONDS": "operations.md#the-worker",
    "MODELBOT_WEB_WORKERS": "operations.md#processes", "MODELBOT_WEB_THREADS": "operations.md#processes",
    "MODELBOT_COMMAND_PROCESSES": "operations.md#processes",
    "MODELBOT_PAGE_ESCALATION_MINUTES": "paging.md",
    "MODELBOT_BIND": "operations.md#binding", "MODELBOT_LISTENER_THREADS": "operations.md#processes",
    "MODELBOT_LISTENER_QUEUE": "operations.md#processes", "MODELBOT_MAX_BODY_BYTES": "operations.md#the-request-body-limit",
    "MODELBOT_RETENTION_DAYS": "operations.md#retention",
}

ENVIRONMENT_INTRO = """\
# Environment

modelbot is configured by environment variables; the web process, the worker and the `modelbot` CLI also read a
`.env` file in the working folder (`.env.example` is a start). A wrong value stops the process at start with the
variable named. Secrets (marked *secret*) never show in a log, a traceback or `/healthz`.

This page is generated from the code at every docs build: the first table from the settings class
(`bot/config.py`), the others from every place the code reads a variable (`os.environ`), so a variable the code
reads cannot be missing here. The page column links to where each one is explained.

"""


def _setting_row(name: str, field) -> str:
    secret = " *secret*" if "SecretStr" in str(field.annotation) else ""
    if field.default is None:
        default = "unset"
    else:
        default = f"`{field.default}`"
    rules = ", ".join(_rules(field))
    kind = _type_name(field.annotation).replace(" (secret)", "") + (f" ({rules})" if rules else "")
    page = SETTING_PAGES.get(name)
    link = f"[{page.split('#')[0].removesuffix('.md').split('/')[-1]}](../{page})" if page else "—"
    return f"| `{name}`{secret} | {_cell(kind)} | {_cell(default)} | {_cell(field.description)} | {link} |"


def environment_reference(root: Path = ROOT) -> str:
    from bot.config import Settings

    reads = environment_reads(root)
    out = [ENVIRONMENT_INTRO, "## The settings (web process, worker, CLI)", "",
           "| variable | type | default | meaning | page |", "|---|---|---|---|---|"]
    out += [_setting_row(name, field) for name, field in Settings.model_fields.items()]
    out += ["", "Any other `AWS_*` variable is boto3's own (credentials, `AWS_PROFILE`, ...), read as boto3 reads it.",
            ""]
    by_group: dict[str, list[str]] = {}
    for name in sorted(reads):
        if name in Settings.model_fields or name.startswith(FOREIGN_PREFIXES):
            continue
        by_group.setdefault(_group_of(reads[name]), []).append(name)
    for key, title, _ in GROUPS:
        names = by_group.get(key)
        if not names:
            continue
        out += [f"## {title}", "", "| variable | default | meaning | read in | page |", "|---|---|---|---|---|"]
        for name in names:
            entry = ENVIRONMENT.get(name)
            places = ", ".join(f"`{p.split(':')[0]}`" for p in dict.fromkeys(p.split(":")[0] for p in reads[name]))
            if entry is None:
                out.append(f"| `{name}` | ? | **not documented** | {places} | — |")
                continue
            page = entry.page
            link = f"[{page.split('#')[0].removesuffix('.md')}](../{page})"
            out.append(f"| `{name}` | {_cell(entry.default)} | {_cell(entry.meaning)} | {places} | {link} |")
        out.append("")
    return "\n".join(out)


# --- commands -------------------------------------------------------------------------------------------------

# The page that explains each /model subcommand (handlers/commands/model.py MODULES -> SUBCOMMANDS).
COMMAND_PAGES = {
    "help": "reference/commands.md#model-in-slack", "status": "status.md", "retrain": "retraining.md", "promote": "rollouts.md",
    "rollback": "rollouts.md", "pause": "rollouts.md", "resume": "rollouts.md", "pricing": "pricing.md",
    "quality": "quality.md", "cost": "cost.md",
}
# The page that explains each `modelbot` CLI command.
CLI_PAGES = {
    "prices refresh": "pricing.md#keeping-prices-fresh", "prices show": "pricing.md#keeping-prices-fresh",
    "pipeline check": "pipelines.md#modelbot-pipeline-check", "new": "new-model.md",
    "update": "new-model.md#updating-how-the-template-is-found-and-versioned",
}

COMMANDS_INTRO = """\
# Commands

Everything modelbot does from Slack is one slash command, `/model`, its text read like a shell line (quotes
group words). This page lists every subcommand and every `modelbot` command-line task, generated from the code
that parses them; each links to the page that explains it.

- **Who may.** Subcommands marked *owners* change something: only the model's `owners` and the `admins` of the
  [models file](models-file.md) may run them. Rights are checked again on every button click, and every
  such command, allowed or refused, is written to the audit log with its reason.
- **Bad input changes nothing.** A usage error gets a reply only you see that says what was wrong (an unknown
  subcommand or model, with "did you mean", a missing or extra argument, unbalanced quotes).
- **Within Slack's 3 seconds.** Every command is acknowledged at once; slow work runs after the ack, in separate
  processes, and its answer replaces the "working on it" note. `/model status` answers in the ack itself.
- **Safe to echo.** Text you typed is escaped before modelbot repeats it, so `<!channel>` stays plain text.
- **Confirmations.** `/model rollback` and `/model promote --force` ask first, with a confirm dialog.
- **In a thread.** Mention the bot inside one of its threads (`@modelbot status`, `@modelbot rollback`,
  `@modelbot pause`) to act on that thread's model.

"""


def _cli_commands() -> list[tuple[str, str, str]]:
    from bot.cli import build_parser

    found = []

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            usage = " ".join(parser.format_usage().split())[len("usage: "):].replace(" [-h]", "")
            found.append((" ".join(words), usage, parser.description or ""))
            return
        helps = {a.dest: a.help for a in actions[0]._choices_actions}
        for word, sub in actions[0].choices.items():
            if not sub.description:
                sub.description = helps.get(word) or ""
            walk(sub, words + [word])

    walk(build_parser(), [])
    return found


def commands_reference() -> str:
    from handlers.commands.model import subcommands

    out = [COMMANDS_INTRO, "## `/model` in Slack", "", "| command | does | who may | page |", "|---|---|---|---|"]
    for name, spec in subcommands().items():
        page = COMMAND_PAGES.get(name)
        link = f"[{page.split('#')[0].removesuffix('.md').split('/')[-1]}](../{page})" if page else "**not documented**"
        usages = [u.strip() for u in spec.usage.split(" | ")]
        usage = "<br>".join(f"`/model {_cell(u)}`" for u in usages)
        who = "owners" if spec.mutating else "anyone"
        summary = "the usage of every subcommand, only visible to you" if name == "help" else spec.summary
        out.append(f"| {usage} | {_cell(summary)} | {who} | {link} |")
    out += ["", "## `modelbot` on a shell", "",
            "The `modelbot` command (installed with modelbot) runs operator tasks against the same settings and "
            "database.", "", "| command | does | page |", "|---|---|---|"]
    for words, usage, about in _cli_commands():
        page = CLI_PAGES.get(words)
        link = f"[{page.split('#')[0].removesuffix('.md')}](../{page})" if page else "**not documented**"
        out.append(f"| `{_cell(usage)}` | {_cell(about)} | {link} |")
    out += ["", "`modelbot-serve` (the model's server) is explained in [Serving](../serving.md); `python -m bot` and "
            "`python -m jobs` in [Operations](../operations.md#processes).", ""]
    return "\n".join(out)


# --- what is not documented -----------------------------------------------------------------------------------

def registry_models() -> list[type]:
    """Every pydantic model the models file is checked with, found from the file's root down."""
    from bot import registry

    found, pending = [], [registry._File]
    while pending:
        model = pending.pop(0)
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            for arg in (field.annotation, *typing.get_args(field.annotation),
                        *(a for t in typing.get_args(field.annotation) for a in typing.get_args(t))):
                if isinstance(arg, type) and issubclass(arg, registry.BaseModel):
                    pending.append(arg)
    return found[1:]  # the file itself has only [defaults] and [models]


def undocumented(reads: dict[str, list[str]] | None = None) -> list[str]:
    """Every gap between the code and the docs: what tests/docs/ requires to be empty."""
    from bot.config import Settings
    from handlers.commands.model import subcommands

    reads = environment_reads() if reads is None else reads
    gaps = []
    for model in registry_models():
        gaps += [f"models file: {model.__name__}.{name} has no Field(description=...)"
                 for name, field in model.model_fields.items() if not field.description]
    for name, field in Settings.model_fields.items():
        if not field.description:
            gaps.append(f"environment: Settings.{name} has no Field(description=...)")
        if name not in SETTING_PAGES:
            gaps.append(f"environment: Settings.{name} has no page in docs/hooks.py SETTING_PAGES")
    for name, places in sorted(reads.items()):
        if name not in Settings.model_fields and name not in ENVIRONMENT and not name.startswith(FOREIGN_PREFIXES):
            gaps.append(f"environment: {name} (read at {', '.join(places)}) has no entry in docs/hooks.py ENVIRONMENT")
    gaps += [f"environment: docs/hooks.py ENVIRONMENT documents {name}, which no code reads any more"
             for name in ENVIRONMENT if name not in reads]
    gaps += [f"environment: docs/hooks.py SETTING_PAGES names {name}, which is not a setting"
             for name in SETTING_PAGES if name not in Settings.model_fields]
    table = subcommands()
    gaps += [f"commands: /model {name} has no page in docs/hooks.py COMMAND_PAGES" for name in table
             if name not in COMMAND_PAGES]
    gaps += [f"commands: docs/hooks.py COMMAND_PAGES names /model {name}, which no longer exists"
             for name in COMMAND_PAGES if name not in table]
    cli = [words for words, _, _ in _cli_commands()]
    gaps += [f"commands: modelbot {words} has no page in docs/hooks.py CLI_PAGES" for words in cli
             if words not in CLI_PAGES]
    gaps += [f"commands: docs/hooks.py CLI_PAGES names modelbot {words}, which no longer exists"
             for words in CLI_PAGES if words not in cli]
    return gaps


# --- MkDocs ---------------------------------------------------------------------------------------------------

PAGES = {
    "reference/models-file.md": models_file_reference,
    "reference/environment.md": environment_reference,
    "reference/commands.md": commands_reference,
}


def on_files(files, config):
    """Add the generated pages, as if they were files in docs/."""
    from mkdocs.structure.files import File

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for uri, render in PAGES.items():
        files.append(File.generated(config, uri, content=render()))
    for gap in undocumented():  # a warning: `mkdocs build --strict` (make docs, make test) fails on it
        log.warning("not documented: %s", gap)
    return files


if __name__ == "__main__":
    wanted = sys.argv[1] if len(sys.argv) > 1 else "environment"
    print(PAGES[f"reference/{wanted}.md"]())
