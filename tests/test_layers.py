"""The layers of the code, enforced: a lower layer never imports a higher one, and nothing imports in a circle.

Order (docs/architecture.md): integrations and store -> slack -> pricing, paging -> rollouts -> runs -> status ->
app, web, jobs, handlers. Peers in one layer (pricing and paging) do not import each other. Project modules are
imported at the top of a module; the only late imports are the chart-drawing modules, loaded by name through
bot/chart_loading.py so the web process stays free of pandas and matplotlib.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers", "jobs", "charts", "sandbox", "serving")

# Most specific prefix wins. (layer, group): a module may import any lower layer, and its own group.
LAYERS: list[tuple[str, int, str]] = [
    # What runs inside a model's container, below everything: it imports nothing of the app (its image has
    # none of the app's dependencies); the app may use it.
    ("serving", -1, "serving"),
    ("charts", 0, "charts"),
    ("bot.errors", 0, "foundation"),
    ("bot.config", 0, "foundation"),
    ("bot.redaction", 0, "foundation"),
    ("bot.registry", 0, "foundation"),
    ("bot.chart_loading", 0, "foundation"),
    ("bot.store", 0, "foundation"),
    ("bot.migrations", 0, "foundation"),
    ("bot.integrations", 0, "foundation"),
    ("bot.metrics", 0, "foundation"),
    ("bot.audit", 1, "slack"),
    ("bot.rights", 1, "slack"),
    ("bot.slack", 1, "slack"),
    ("bot.pricing", 2, "pricing"),
    ("bot.paging", 2, "paging"),
    ("bot.pipelines", 2, "pipelines"),
    # Application Auto Scaling kept right: below the rollouts, which call it in order with a traffic change.
    ("bot.scaling", 2.5, "scaling"),
    ("bot.rollouts", 3, "rollouts"),
    ("bot.scaffold", 3, "scaffold"),
    ("bot.cost", 3.5, "cost"),  # prices x instances, from pricing, rollouts' roles and the snapshot's history
    ("bot.runs", 4, "runs"),
    ("bot.quality", 4.5, "quality"),  # reads runs and rollouts, starts retraining; status shows its decays
    ("bot.status", 5, "status"),
    ("bot.services", 6, "services"),
    ("jobs", 7, "jobs"),
    ("handlers", 7, "handlers"),
    ("bot.app", 8, "app"),
    ("bot.web", 8, "app"),
    ("bot", 8, "app"),
    ("bot.cli", 9, "entry"),
    ("bot.__main__", 9, "entry"),
    ("jobs.__main__", 9, "entry"),
    # The local world and test fakes: they drive the app from outside and may import anything;
    # nothing in the product imports them.
    ("sandbox", 10, "sandbox"),
]

# Entry points choose what to load (a CLI answers --help without importing the app; `python -m bot` loads
# Socket Mode or HTTP), so they may import late. Everything else imports late only the chart modules.
LATE_IMPORTS_ALLOWED = {"bot.cli", "bot.__main__", "jobs.__main__"}


def layer_of(module: str) -> tuple[int, str, str]:
    best = None
    for prefix, layer, group in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[2]):
                best = (layer, group, prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "versions" in path.parts:  # migration scripts import only alembic and sqlalchemy
                continue
            found[module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, imported inside a function) for each project import of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    this = module_name(path)
    found: list[tuple[str, int, bool]] = []

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only: no import at run time
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = resolve(alias.name)
                    if target:
                        found.append((target, child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    # `from bot.rollouts import service` imports the submodule bot.rollouts.service
                    target = resolve(f"{child.module}.{alias.name}") or resolve(child.module)
                    if target and target != this:
                        found.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def violations(modules: dict[str, Path]) -> list[str]:
    problems = []
    for module, path in sorted(modules.items()):
        layer, group, _ = layer_of(module)
        for target, line, late in imports(path, modules):
            t_layer, t_group, _ = layer_of(target)
            where = f"{path.relative_to(ROOT)}:{line}"
            if group != "sandbox" and t_group == "sandbox":
                problems.append(f"{where}: {module} imports the sandbox ({target}); product code never does")
            elif t_layer > layer or (t_layer == layer and t_group != group and group != "sandbox"):
                problems.append(f"{where}: {module} (layer {group}) imports {target} (layer {t_group}), "
                                "which is not below it")
            if late and group != "sandbox" and module not in LATE_IMPORTS_ALLOWED and t_group != "charts":
                problems.append(f"{where}: {module} imports {target} inside a function; import it at the top "
                                "(chart modules load by name through bot.chart_loading)")
    return problems


def cycles(modules: dict[str, Path]) -> list[list[str]]:
    graph = {m: {t for t, _, _ in imports(p, modules) if t != m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_lower_layers_never_import_higher_ones():
    problems = violations(project_modules())
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_no_import_cycles():
    found = cycles(project_modules())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """A test that cannot fail is a defect: an integration importing a capability must be reported."""
    fake_root = tmp_path
    (fake_root / "bot" / "integrations").mkdir(parents=True)
    (fake_root / "bot" / "rollouts").mkdir(parents=True)
    (fake_root / "bot" / "__init__.py").write_text("")
    (fake_root / "bot" / "integrations" / "__init__.py").write_text("")
    (fake_root / "bot" / "rollouts" / "__init__.py").write_text("")
    (fake_root / "bot" / "rollouts" / "service.py").write_text("X = 1\n")
    (fake_root / "bot" / "integrations" / "sagemaker.py").write_text(
        "from bot.rollouts import service\n\ndef f():\n    from bot.rollouts.service import X\n    return X\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", fake_root, raising=False)
    monkeypatch.setitem(globals(), "ROOT", fake_root)
    mods = {module_name(p): p for p in (fake_root / "bot").rglob("*.py")}
    problems = violations(mods)
    assert any("bot.integrations.sagemaker (layer foundation) imports bot.rollouts.service" in p for p in problems)
    assert any("inside a function" in p for p in problems)


def test_the_checker_catches_serving_importing_the_app(tmp_path, monkeypatch):
    """serving/ runs in a model's image without the app's dependencies: importing bot/ there must fail the test."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "serving").mkdir()
    (tmp_path / "bot" / "store").mkdir(parents=True)
    for init in ("serving", "bot", "bot/store"):
        (tmp_path / init / "__init__.py").write_text("")
    (tmp_path / "bot" / "store" / "engine.py").write_text("X = 1\n")
    (tmp_path / "serving" / "app.py").write_text("from bot.store import engine\n")
    problems = violations({module_name(p): p for p in tmp_path.rglob("*.py")})
    assert any("serving.app (layer serving) imports bot.store.engine" in p for p in problems), problems


@pytest.mark.parametrize("module,expected", [("bot.rollouts.plans", "rollouts"), ("bot.slack.outbox", "slack"),
                                             ("bot.integrations.airflow", "foundation"), ("jobs.run_watcher", "jobs"),
                                             ("serving.app", "serving")])
def test_every_module_has_a_layer(module, expected):
    assert layer_of(module)[1] == expected
