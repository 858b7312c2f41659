"""The module's JSON Schemas, compiled once at start, and their failures as field paths a person can read.

jsonschema-rs compiles a schema into a Rust validator: checking a row costs about a microsecond, where the
pure-Python `jsonschema` spends 40 (bench/serving.py keeps the serving overhead within milliseconds at 100 rows).
It implements draft 2020-12 in full, the draft pydantic's `model_json_schema()` writes. Formats are annotations
in 2020-12 unless asked for; we do not ask, as `jsonschema` in the pipeline's checks does not either.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import jsonschema_rs

from serving.errors import FieldError, StartupError, shorten

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
DIALECTS = ("https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2020-12/schema#")


def field_path(prefix: str, parts: Iterable[Any]) -> str:
    """instances[0].address.zip, instances[2]["monthly spend"], predictions[1][0]."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


class Schema:
    """One compiled schema: `is_valid` on the hot path, `errors` only for what failed."""

    def __init__(self, schema: dict, validator):
        self.schema = schema
        self._validator = validator
        self.is_valid = validator.is_valid

    @classmethod
    def compile(cls, schema: Any, where: str) -> "Schema":
        """`where` names it for the data scientist, e.g. churn_model.REQUEST_SCHEMA."""
        if isinstance(schema, bool):  # true: anything; false: nothing (draft 2020-12 allows both)
            return cls({} if schema else {"not": {}}, jsonschema_rs.Draft202012Validator(schema))
        if not isinstance(schema, dict):
            hint = ""
            if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
                hint = f": write {where.rsplit('.', 1)[-1]} = {schema.__name__}.model_json_schema()"
            raise StartupError(f"{where} must be a JSON Schema (a dict); it is a {_kind(schema)}{hint}")
        dialect = schema.get("$schema")
        if dialect is not None and dialect not in DIALECTS:
            raise StartupError(f"{where} declares $schema {dialect!r}; modelbot validates with draft 2020-12: "
                               f"remove $schema or set it to {DIALECTS[0]!r}")
        try:
            json.dumps(schema, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StartupError(f"{where} is not plain JSON ({exc}): a JSON Schema holds only dicts, lists, "
                               "strings, numbers, booleans and None") from exc
        try:
            # offline: a schema that points at a URL would be fetched at every start; serving must not depend
            # on the network, so a remote $ref fails here, at start.
            validator = jsonschema_rs.Draft202012Validator(schema, offline=True)
        except jsonschema_rs.ValidationError as exc:
            location = field_path("", exc.instance_path).lstrip(".")
            at = f" at {location}" if location else ""
            message = exc.message.split("\n", 1)[0]
            if "not present in a registry" in message or "retrieving it failed" in message:
                raise StartupError(f"{where} refers to a schema outside itself ({shorten(message, 160)}); "
                                   "serving does not fetch schemas over the network: put it under $defs") from exc
            path = list(exc.instance_path)
            if path and path[-1] == "type" and isinstance(exc.instance, str):
                message = f"{json.dumps(exc.instance)} is not a JSON type (one of {', '.join(JSON_TYPES)})"
            raise StartupError(f"{where} is not a valid JSON Schema{at}: {shorten(message, 200)}") from exc
        except Exception as exc:  # the library's other refusals (a bad regex, a broken $ref) have no own class
            raise StartupError(f"{where} cannot be compiled: {shorten(str(exc).splitlines()[0], 200)}") from exc
        return cls(schema, validator)

    def errors(self, instance: Any, prefix: str) -> list[FieldError]:
        """Each failing field under `prefix` (instances[3]) with why, in the order the schema found them."""
        found: list[FieldError] = []
        for error in self._validator.iter_errors(instance):
            found.extend(_field_errors(error, prefix))
        return found

    def properties(self) -> list[str]:
        """The top-level properties, in the schema's order (pydantic keeps the model's field order)."""
        props = self.schema.get("properties")
        return list(props) if isinstance(props, dict) else []

    def allows_other_properties(self) -> bool:
        return self.schema.get("additionalProperties", True) is not False and \
            self.schema.get("unevaluatedProperties", True) is not False

    def property_types(self, name: str) -> frozenset[str]:
        """The JSON types a top-level property may take (empty: anything), to read a CSV cell as that type."""
        props = self.schema.get("properties") or {}
        return frozenset(self._types(props.get(name, {}), depth=0))

    def _types(self, node: Any, depth: int) -> set[str]:
        if not isinstance(node, dict) or depth > 20:
            return set()
        if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
            target: Any = self.schema
            for key in node["$ref"][2:].split("/"):
                target = target.get(key.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            return self._types(target, depth + 1)
        kind = node.get("type")
        if isinstance(kind, str):
            return {kind}
        if isinstance(kind, list):
            return {k for k in kind if isinstance(k, str)}
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                union: set[str] = set()
                for option in node[key]:
                    types = self._types(option, depth + 1)
                    if not types:
                        return set()  # one option takes anything: so does the whole
                    union |= types
                return union
        values = node.get("enum") if isinstance(node.get("enum"), list) else (
            [node["const"]] if "const" in node else None)
        if values is not None:
            return {_json_type(v) for v in values}
        if isinstance(node.get("allOf"), list):
            for option in node["allOf"]:
                types = self._types(option, depth + 1)
                if types:
                    return types
        return set()


def _field_errors(error, prefix: str) -> list[FieldError]:
    kind = error.kind
    path = list(error.instance_path)
    name = kind.name
    if name == "required":
        return [FieldError(field_path(prefix, [*path, kind.property]), "is required but missing")]
    if name == "additionalProperties":
        return [FieldError(field_path(prefix, [*path, key]), "is not a field of the schema (additional fields are "
                           "not allowed)") for key in kind.unexpected]
    if name in ("anyOf", "oneOf") and getattr(kind, "context", None):
        return [FieldError(field_path(prefix, path), _alternatives(error))]
    return [FieldError(field_path(prefix, path), shorten(error.message))]


def _alternatives(error) -> str:
    """`anyOf` says only that nothing matched; say what would have (pydantic writes Optional[int] this way)."""
    value = shorten(json.dumps(error.instance, default=str), 80)
    wanted = []
    for branch in error.kind.context:
        if len(branch) == 1 and branch[0].kind.name == "type" and not list(branch[0].instance_path)[len(
                list(error.instance_path)):]:
            wanted.append(" or ".join(branch[0].kind.types))
        else:
            return shorten(f"{value} matches none of the allowed forms: " +
                           "; or ".join(", ".join(e.message for e in b) for b in error.kind.context))
    return f"{value} is not {_or(wanted)}"


def _or(types: list[str]) -> str:
    named = [("null" if t == "null" else f"{'an' if t[0] in 'aeiou' else 'a'} {t}") for t in types]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kind(value: Any) -> str:
    if isinstance(value, type):
        return f"class ({value.__name__})"
    return type(value).__name__
