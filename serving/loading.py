"""Everything checked once, before the server listens: the module, its contract, its schemas and the model.

Each failure is a StartupError whose one line says what to change, for someone who knows pandas, not
SageMaker. The model module contract: `predict(model, features: DataFrame) -> one prediction per row`,
`REQUEST_SCHEMA` (one instance), `RESPONSE_SCHEMA` (one prediction), optionally `FEATURES` (the column order)
and `load(model_dir) -> model` (else model.pkl, what `train` returned, pickled by the pipeline).
"""

from __future__ import annotations

import importlib
import inspect
import io
import logging
import pickle
import sys
import sysconfig
import tarfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from serving.errors import StartupError, shorten
from serving.schemas import Schema

log = logging.getLogger("modelbot.serve")

PREDICT_SHAPE = "predict(model, features) -> one prediction per row"


@dataclass(frozen=True)
class ServedModel:
    module_name: str
    predict: Callable[[Any, Any], Any]
    model: Any
    request: Schema
    response: Schema
    features: tuple[str, ...] | None  # the CSV column order; also the DataFrame's when given
    columns: tuple[str, ...]  # the DataFrame's columns, in order
    other_columns: bool  # instances may carry fields beyond `columns`, kept as further columns
    float_columns: bool  # every column is a JSON number (or null): the frame is one float64 block
    source: str  # where the model came from, for the start-up log


@dataclass(frozen=True)
class ModelModule:
    """The module's contract, checked; the model itself is loaded after."""

    name: str
    module: ModuleType
    predict: Callable[[Any, Any], Any]
    load: Callable[[str], Any] | None
    request: Schema
    response: Schema
    features: tuple[str, ...] | None


def import_model_module(name: str) -> ModelModule:
    module = _import(name)
    predict = _function(module, name, "predict", 2, PREDICT_SHAPE, required=True)
    load = _function(module, name, "load", 1, "load(model_dir) -> model", required=False)
    if isinstance(getattr(module, "REQUEST_SCHEMA", None), bool):
        raise StartupError(f"{name}.REQUEST_SCHEMA is {module.REQUEST_SCHEMA}: describe one request instance as an "
                           'object schema ({"type": "object", "properties": {...}})')
    request = _schema(module, name, "REQUEST_SCHEMA", "the JSON Schema of one request instance, an object")
    response = _schema(module, name, "RESPONSE_SCHEMA", "the JSON Schema of one prediction")
    kind = request.schema.get("type")
    if kind is not None and kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise StartupError(f"{name}.REQUEST_SCHEMA says type {kind!r}, but it describes ONE instance, a JSON "
                           "object of field: value (requests send a list of them as \"instances\")")
    features = _features(module, name, request)
    return ModelModule(name, module, predict, load, request, response, features)


def load_served_model(name: str, model_dir: str) -> ServedModel:
    contract = import_model_module(name)
    model, source = _load_model(contract, Path(model_dir))
    if contract.features is not None:
        columns, others = contract.features, False
    else:
        columns, others = tuple(contract.request.properties()), contract.request.allows_other_properties()
    floats = bool(columns) and not others and all(
        "number" in types and types <= {"number", "null"} for types in map(contract.request.property_types, columns))
    return ServedModel(name, contract.predict, model, contract.request, contract.response, contract.features,
                       columns, others, floats, source)


def _import(name: str) -> ModuleType:
    # A console script's sys.path starts at its bin directory: add the working directory, as `python -m` would,
    # so `MODELBOT_MODEL_MODULE=churn_model modelbot-serve` works next to churn_model.py.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            places = ", ".join(p for p in sys.path if p and "site-packages" not in p
                               and not p.startswith((sys.base_prefix, sys.prefix)))[:300]
            raise StartupError(f"cannot import {name} (MODELBOT_MODEL_MODULE): no module of that name on the "
                               f"Python path ({places or 'working directory only'}); put its directory on "
                               "PYTHONPATH or start modelbot-serve from it") from exc
        raise StartupError(f"importing {name} failed: {name} imports {exc.name}, which is not installed"
                           f"{_where(exc)}: add it to the model's requirements") from exc
    except SyntaxError as exc:
        raise StartupError(f"importing {name} failed: SyntaxError: {exc.msg} ({Path(exc.filename or '?').name}, "
                           f"line {exc.lineno})") from exc
    except SystemExit as exc:  # argparse or sys.exit at the module's top level
        raise StartupError(f"importing {name} called sys.exit({exc.code!r}){_where(exc)}: code that runs the "
                           "module as a script belongs under `if __name__ == \"__main__\":`") from exc
    except Exception as exc:
        raise StartupError(f"importing {name} raised {_exception(exc)}{_where(exc)}") from exc


def _function(module: ModuleType, name: str, attr: str, arity: int, shape: str, *, required: bool):
    fn = getattr(module, attr, None)
    if fn is None:
        if required:
            raise StartupError(f"{name} has no {attr}: define {shape}")
        return None
    if not callable(fn):
        raise StartupError(f"{name}.{attr} is a {type(fn).__name__}, not a function: define {shape}")
    try:
        inspect.signature(fn).bind(*range(arity))
    except TypeError:
        raise StartupError(f"{name}.{attr}{inspect.signature(fn)} cannot be called as {shape.split(' ->')[0]}") \
            from None
    except ValueError:  # a builtin without a signature: trust it
        pass
    return fn


def _schema(module: ModuleType, name: str, attr: str, what: str) -> Schema:
    if not hasattr(module, attr):
        raise StartupError(f"{name} has no {attr}: define {attr}, {what} (JSON Schema draft 2020-12; a pydantic "
                           "model's model_json_schema() will do)")
    return Schema.compile(getattr(module, attr), f"{name}.{attr}")


def _features(module: ModuleType, name: str, request: Schema) -> tuple[str, ...] | None:
    features = getattr(module, "FEATURES", None)
    if features is None:
        return None
    if isinstance(features, str) or not isinstance(features, (list, tuple)) or not features \
            or not all(isinstance(f, str) and f for f in features):
        raise StartupError(f"{name}.FEATURES must be a non-empty list of column names (strings), in the order of "
                           f"a CSV row; it is {shorten(repr(features), 80)}")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:
        raise StartupError(f"{name}.FEATURES names {', '.join(repeated)} more than once")
    known = set(request.properties())
    if known and not request.allows_other_properties():
        unknown = [f for f in features if f not in known]
        if unknown:
            raise StartupError(f"{name}.FEATURES names {', '.join(unknown)}, which REQUEST_SCHEMA does not define "
                               "(and it allows no other fields): no request could carry them")
    required = request.schema.get("required") or []
    missing = [r for r in required if isinstance(r, str) and r not in features]
    if missing:
        log.warning("%s.REQUEST_SCHEMA requires %s, which FEATURES leaves out: a CSV request (FEATURES only) can "
                    "never carry it", name, ", ".join(missing))
    return tuple(features)


def _load_model(contract: ModelModule, model_dir: Path) -> tuple[Any, str]:
    name = contract.name
    if contract.load is not None:
        try:
            model = contract.load(str(model_dir))
        except (Exception, SystemExit) as exc:
            raise StartupError(f"{name}.load({str(model_dir)!r}) raised {_exception(exc)}{_where(exc)}") from exc
        if model is None:
            raise StartupError(f"{name}.load({str(model_dir)!r}) returned None; it must return the model")
        return model, f"{name}.load({str(model_dir)!r})"
    if not model_dir.is_dir():
        raise StartupError(f"the model directory {model_dir} (SM_MODEL_DIR) does not exist: SageMaker unpacks "
                           "model.tar.gz there; to run locally, point SM_MODEL_DIR at a directory with model.pkl")
    pkl, tarball = model_dir / "model.pkl", model_dir / "model.tar.gz"
    try:
        if pkl.is_file():
            blob, source = pkl.read_bytes(), str(pkl)
        elif tarball.is_file():  # the pipeline's artifact itself, handy locally
            blob, source = _pkl_from_tarball(tarball), f"{tarball}:model.pkl"
        else:
            held = sorted(p.name for p in model_dir.iterdir())[:8]
            raise StartupError(f"no model.pkl in {model_dir} (SM_MODEL_DIR; it holds "
                               f"{', '.join(held) or 'nothing'}): the pipeline's model.tar.gz has model.pkl, what "
                               f"train returned; or define {name}.load(model_dir) to load the model yourself")
    except OSError as exc:
        raise StartupError(f"cannot read the model in {model_dir}: {_exception(exc)}") from exc
    try:
        return pickle.loads(blob), source
    except ModuleNotFoundError as exc:
        raise StartupError(f"{source} cannot be unpickled: it needs the module {exc.name}, which is not installed "
                           "here: add it to the model's requirements (the packages train used)") from exc
    except Exception as exc:
        raise StartupError(f"{source} cannot be unpickled: {_exception(exc)} (is it what train returned, pickled "
                           "by the pipeline, with the same package versions?)") from exc


def _pkl_from_tarball(path: Path) -> bytes:
    try:
        with tarfile.open(path, mode="r:*") as tar:
            member = tar.extractfile("model.pkl")
            if member is None:
                raise KeyError("model.pkl")
            return member.read()
    except KeyError:
        raise StartupError(f"{path} has no model.pkl at its root") from None
    except (tarfile.TarError, EOFError, io.UnsupportedOperation) as exc:
        raise StartupError(f"{path} is not a readable tar.gz: {_exception(exc)}") from exc


def _exception(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {shorten(text, 200)}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """` (churn_model.py, line 12)`: the deepest frame in the data scientist's code, not in Python or a library."""
    library = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    library.add(str(Path(__file__).resolve().parent))
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        filename = frame.filename
        if filename.startswith("<") or any(filename.startswith(p) for p in library):
            continue
        found = frame
    return f" ({Path(found.filename).name}, line {found.lineno})" if found else ""
