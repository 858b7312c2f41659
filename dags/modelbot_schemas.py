"""The model's request and response schemas, for modelbot's generated pipelines (modelbot_pipelines.py).

Keep this file beside modelbot_pipelines.py (it imports this one). It needs only `jsonschema`, which the
scheduler's and workers' Python already has (Airflow depends on it), and imports nothing of modelbot.

A model module declares `REQUEST_SCHEMA` (JSON Schema, draft 2020-12, of ONE instance: an object) and
`RESPONSE_SCHEMA` (of ONE prediction). modelbot-serve enforces them on every request; this file checks them
before anything is deployed:

- `schema_problems`: each schema is a valid draft 2020-12 schema whose references resolve inside it, and the
  request schema describes an object;
- `refusals`: which validation rows (or predictions) a schema refuses, naming the row, the field and the rule;
- `compare`: what a candidate's request schema would refuse that production's accepts (a new required field, a
  removed field it no longer allows, a narrowed type or enum, a tighter bound), field by field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DIALECTS = (DIALECT, DIALECT + "#")
_BASE_URI = "urn:modelbot:schema"


# ---------------------------------------------------------------- the schemas themselves

def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            elif key not in ("enum", "const", "default", "examples"):  # values there are data, not schemas
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def resolver(schema: dict):
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    return Registry().with_resource(_BASE_URI, DRAFT202012.create_resource(schema)).resolver(_BASE_URI)


def _accepts_objects(schema: dict) -> bool:
    kind = schema.get("type")
    return kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)


def schema_problems(name: str, schema: Any, *, instance: bool) -> list[str]:
    """Why `schema` cannot be used (empty when it can). `instance`: it describes one request instance."""
    from jsonschema import Draft202012Validator, SchemaError
    from referencing.exceptions import Unresolvable

    if isinstance(schema, bool):
        return [] if not instance else [f"{name} is {schema}: describe one request instance as an object schema "
                                        '({"type": "object", "properties": {...}})']
    if not isinstance(schema, dict):
        return [f"{name} is a {type(schema).__name__}; it must be a JSON Schema (a dict, e.g. a pydantic model's "
                "model_json_schema())"]
    dialect = schema.get("$schema")
    if dialect is not None and dialect not in _DIALECTS:
        return [f"{name} declares $schema {dialect!r}; modelbot validates with draft 2020-12: remove $schema or set "
                f"it to {DIALECT!r}"]
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return [f"{name} is not plain JSON ({exc}); use dicts, lists, strings, numbers, true/false and None"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = _path(exc.absolute_path) or "the top level"
        return [f"{name} is not a valid JSON Schema (draft 2020-12): at {where}: {exc.message}"]
    problems = []
    lookup = resolver(schema)
    for ref in sorted(set(_refs(schema))):
        try:
            lookup.lookup(ref)
        except Unresolvable:
            problems.append(f"{name} refers to {ref!r}, which is not inside the schema; modelbot-serve resolves only "
                            "references within it (e.g. '#/$defs/Address')")
    if instance and not _accepts_objects(schema):
        problems.append(f"{name} has type {schema.get('type')!r}; one request instance is an object "
                        '({"type": "object", "properties": {...}})')
    return problems


def validator(schema: dict):
    """A compiled draft 2020-12 validator. `format` is an annotation, as the draft says and modelbot-serve does."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


# ---------------------------------------------------------------- rows and predictions against a schema

def json_value(value: Any) -> Any:
    """A prediction as JSON has it: numpy scalars and arrays, tuples and dict keys, dates as ISO strings."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_value(value.tolist())
    if hasattr(value, "isoformat"):  # dates and timestamps travel as ISO strings
        return value.isoformat()
    return value  # NaN stays NaN: the pipeline refuses it with its own message


def _rule(error) -> str:
    value = json.dumps(error.validator_value, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    return f"rule {error.validator}: {value}"


def error_lines(error, *, limit: int = 3) -> list[str]:
    """One line per failing field: `field: why (rule keyword: value)`."""
    from jsonschema.exceptions import best_match

    if error.validator == "required" and isinstance(error.instance, dict):
        base = list(error.absolute_path)
        missing = [p for p in error.validator_value if p not in error.instance]
        return [f"{_path(base + [p])}: is required and missing ({_rule(error)})" for p in missing[:limit]]
    field = _path(error.absolute_path) or "(the whole instance)"
    message = error.message
    if error.context:  # anyOf / oneOf: say why the closest alternative failed
        closest = best_match(error.context)
        message += f"; closest: {closest.message}"
    if len(message) > 240:
        message = message[:237] + "..."
    return [f"{field}: {message} ({_rule(error)})"]


@dataclass(frozen=True)
class Refusals:
    """What a schema refused among many instances: how many, and the first few, each named."""

    refused: int
    total: int
    lines: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.refused > 0


def refusals(check, instances: list[Any], labels: list[str], *, show: int = 5) -> Refusals:
    """Each instance against the compiled validator `check`; `labels[i]` names instance i in the lines."""
    lines: list[str] = []
    refused = 0
    for instance, label in zip(instances, labels):
        errors = sorted(check.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        if not errors:
            continue
        refused += 1
        if refused > show:
            continue
        fields: list[str] = []
        seen = set()
        for error in errors:
            key = (tuple(map(str, error.absolute_path)), error.validator)
            if key not in seen:
                seen.add(key)
                fields.extend(error_lines(error))
        lines.append(f"{label}: " + "; ".join(fields[:4]) + (f"; and {len(fields) - 4} more" if len(fields) > 4
                                                               else ""))
    return Refusals(refused=refused, total=len(instances), lines=tuple(lines))


# ---------------------------------------------------------------- compatibility of two request schemas

@dataclass(frozen=True)
class Change:
    field: str  # "age", "address.zip", "tags[]", or "(the whole request)"
    change: str  # what changed, in words

    def as_dict(self) -> dict:
        return {"field": self.field, "change": self.change}


# Keywords that only describe (draft 2020-12 asserts none of them; `format` is an annotation there).
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
                "format", "contentMediaType", "contentEncoding", "contentSchema", "$schema", "$id", "$defs",
                "definitions", "$anchor", "$dynamicAnchor", "$vocabulary", "discriminator"}
# Keywords compare() understands; any other one that differs is reported as a change it cannot judge.
_UNDERSTOOD = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
               "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
               "pattern", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "anyOf", "oneOf",
               "allOf", "$ref", "unevaluatedProperties"}
_MAX_DEPTH = 32


def _show(values: Iterable[Any]) -> str:
    text = ", ".join(json.dumps(v, default=str) for v in values)
    return text if len(text) <= 120 else text[:117] + "..."


class _Comparer:
    def __init__(self, old_lookup, new_lookup):
        self.old_lookup, self.new_lookup = old_lookup, new_lookup
        self.breaking: list[Change] = []
        self.compatible: list[Change] = []

    # -- normalising: references followed, allOf merged, alternatives split

    @staticmethod
    def _deref(schema: Any, lookup, depth: int = 0) -> Any:
        while isinstance(schema, dict) and "$ref" in schema and lookup is not None and depth < _MAX_DEPTH:
            target = lookup.lookup(schema["$ref"]).contents
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = target if not rest else ({**target, **rest} if isinstance(target, dict) else target)
            depth += 1
        if isinstance(schema, dict) and isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = _Comparer._deref(part, lookup, depth + 1)
                if isinstance(part, dict):
                    for key, value in part.items():
                        if key == "required":
                            merged["required"] = sorted(set(merged.get("required", [])) | set(value))
                        elif key == "properties":
                            merged["properties"] = {**part["properties"], **merged.get("properties", {})}
                        else:
                            merged.setdefault(key, value)
            schema = merged
        return schema

    def _branches(self, schema: Any, lookup, depth: int = 0) -> list[Any]:
        schema = self._deref(schema, lookup)
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return [schema]
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                base = {k: v for k, v in schema.items() if k != key}
                out = []
                for alt in schema[key]:
                    alt = self._deref(alt, lookup)
                    if isinstance(alt, dict):
                        out.extend(self._branches({**base, **alt}, lookup, depth + 1))
                    elif alt is not False:
                        out.append(base or alt)
                return out
        return [schema]

    # -- the comparison

    def compare(self, old: Any, new: Any, field: str, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            return
        olds, news = self._branches(old, self.old_lookup), self._branches(new, self.new_lookup)
        if len(olds) == 1 and len(news) == 1:
            self._compare_one(olds[0], news[0], field, depth)
            return
        for branch in olds:
            best: _Comparer | None = None
            for candidate in news:
                trial = _Comparer(self.old_lookup, self.new_lookup)
                trial._compare_one(branch, candidate, field, depth)
                if best is None or len(trial.breaking) < len(best.breaking):
                    best = trial
                if not trial.breaking:
                    break
            if best is not None:
                self.breaking.extend(c for c in best.breaking if c not in self.breaking)
                self.compatible.extend(c for c in best.compatible if c not in self.compatible)

    def _compare_one(self, old: Any, new: Any, field: str, depth: int) -> None:
        if new is True or new == {} or old is False:
            if isinstance(old, dict) and old and new is not old and _constraining(old):
                self.compatible.append(Change(field, "no longer constrained"))
            return
        if new is False:
            self.breaking.append(Change(field, "no longer accepted at all"))
            return
        if old is True:
            old = {}
        if not isinstance(old, dict) or not isinstance(new, dict):
            return
        self._types(old, new, field)
        self._values(old, new, field)
        self._bounds(old, new, field)
        if _may_be(old, "object"):
            self._objects(old, new, field, depth)
        if _may_be(old, "array"):
            self._arrays(old, new, field, depth)
        for key in sorted((set(old) | set(new)) - _UNDERSTOOD - _ANNOTATIONS):
            if old.get(key) != new.get(key):
                self.breaking.append(Change(field, f"`{key}` changed; modelbot cannot tell whether that refuses "
                                                   "requests production accepts, so it counts as breaking"))

    def _types(self, old: dict, new: dict, field: str) -> None:
        def kinds(s: dict) -> set[str] | None:
            t = s.get("type")
            return None if t is None else ({t} if isinstance(t, str) else set(t))

        before, after = kinds(old), kinds(new)
        if after is None:
            if before is not None:
                self.compatible.append(Change(field, f"type widened: {'/'.join(sorted(before))} -> any"))
            return
        if before is None:
            self.breaking.append(Change(field, f"type narrowed: any -> {'/'.join(sorted(after))}"))
            return

        def covered(kinds_: set[str]) -> set[str]:  # every integer is a number
            return kinds_ | ({"integer"} if "number" in kinds_ else set())

        lost = sorted(before - covered(after))
        if lost:
            self.breaking.append(Change(field, f"type narrowed: {'/'.join(sorted(before))} -> "
                                               f"{'/'.join(sorted(after))} ({', '.join(lost)} no longer accepted)"))
        elif after - covered(before):
            self.compatible.append(Change(field, f"type widened: {'/'.join(sorted(before))} -> "
                                                 f"{'/'.join(sorted(after))}"))

    def _values(self, old: dict, new: dict, field: str) -> None:
        def allowed(s: dict) -> list | None:
            if "const" in s:
                return [s["const"]]
            return list(s["enum"]) if isinstance(s.get("enum"), list) else None

        before, after = allowed(old), allowed(new)
        if after is None:
            if before is not None:
                self.compatible.append(Change(field, "any value now accepted (no enum)"))
            return
        if before is None:
            self.breaking.append(Change(field, f"enum narrowed: only {_show(after)} accepted now"))
            return
        lost = [v for v in before if v not in after]
        gained = [v for v in after if v not in before]
        if lost:
            self.breaking.append(Change(field, f"enum narrowed: {_show(lost)} no longer accepted"))
        if gained:
            self.compatible.append(Change(field, f"enum widened: {_show(gained)} now accepted too"))

    def _bounds(self, old: dict, new: dict, field: str) -> None:
        def lower(s: dict) -> tuple[float, bool] | None:  # (bound, exclusive)
            found = [(float(s["minimum"]), False)] if _number(s.get("minimum")) else []
            found += [(float(s["exclusiveMinimum"]), True)] if _number(s.get("exclusiveMinimum")) else []
            return max(found) if found else None

        def upper(s: dict) -> tuple[float, bool] | None:
            found = [(float(s["maximum"]), False)] if _number(s.get("maximum")) else []
            found += [(float(s["exclusiveMaximum"]), True)] if _number(s.get("exclusiveMaximum")) else []
            return min(found, key=lambda b: (b[0], not b[1])) if found else None

        def words(bound: tuple[float, bool] | None, low: bool) -> str:
            if bound is None:
                return "none"
            return f"{'>' if low else '<'}{'' if bound[1] else '='} {bound[0]:g}"

        if not _may_be(old, "number"):
            lo_old = lo_new = hi_old = hi_new = None
        else:
            lo_old, lo_new, hi_old, hi_new = lower(old), lower(new), upper(old), upper(new)
        if lo_new is not None and (lo_old is None or lo_new > lo_old):
            self.breaking.append(Change(field, f"lower bound tightened: {words(lo_old, True)} -> {words(lo_new, True)}"))
        elif lo_old is not None and (lo_new is None or lo_new < lo_old):
            self.compatible.append(Change(field, f"lower bound relaxed: {words(lo_old, True)} -> "
                                                 f"{words(lo_new, True)}"))
        if hi_new is not None and (hi_old is None or (hi_new[0], not hi_new[1]) < (hi_old[0], not hi_old[1])):
            self.breaking.append(Change(field, f"upper bound tightened: {words(hi_old, False)} -> "
                                               f"{words(hi_new, False)}"))
        elif hi_old is not None and (hi_new is None or (hi_new[0], not hi_new[1]) > (hi_old[0], not hi_old[1])):
            self.compatible.append(Change(field, f"upper bound relaxed: {words(hi_old, False)} -> "
                                                 f"{words(hi_new, False)}"))
        for key, tighter in (("minLength", 1), ("minItems", 1), ("minProperties", 1),
                             ("maxLength", -1), ("maxItems", -1), ("maxProperties", -1)):
            if not _may_be(old, _APPLIES[key]):
                continue
            a, b = old.get(key), new.get(key)
            if not _number(b) and not _number(a):
                continue
            if _number(b) and (not _number(a) or (b - a) * tighter > 0):
                self.breaking.append(Change(field, f"{key} tightened: {a if _number(a) else 'none'} -> {b}"))
            elif a != b:
                self.compatible.append(Change(field, f"{key} relaxed: {a} -> {b if _number(b) else 'none'}"))
        a, b = old.get("multipleOf"), new.get("multipleOf")
        if _may_be(old, "number") and _number(b) and (not _number(a) or not _divides(b, a)):
            self.breaking.append(Change(field, f"multipleOf tightened: {a if _number(a) else 'none'} -> {b}"))
        if (_may_be(old, "string") and new.get("pattern") is not None
                and new.get("pattern") != old.get("pattern")):
            self.breaking.append(Change(field, f"pattern changed: {json.dumps(old.get('pattern'))} -> "
                                               f"{json.dumps(new['pattern'])}"))
        if _may_be(old, "array") and new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
            self.breaking.append(Change(field, "items must now be unique"))

    def _objects(self, old: dict, new: dict, field: str, depth: int) -> None:
        old_props = old.get("properties") if isinstance(old.get("properties"), dict) else {}
        new_props = new.get("properties") if isinstance(new.get("properties"), dict) else {}
        old_req = set(old.get("required") or [])
        new_req = set(new.get("required") or [])
        child = (lambda name: f"{field}.{name}") if field else (lambda name: name)
        other = self._others(new)
        for name in sorted(new_req - old_req):
            self.breaking.append(Change(child(name), "now required (production accepts requests without it)"
                                        if name in old_props else "new required field"))
        for name in sorted(old_req - new_req):
            self.compatible.append(Change(child(name), "no longer required"))
        for name in sorted(set(old_props) - set(new_props)):
            if other is False:
                self.breaking.append(Change(child(name), "removed: requests that send it are refused now "
                                                         "(additional properties are not allowed)"))
            elif other is True:
                self.compatible.append(Change(child(name), "no longer declared (still accepted)"))
            else:
                self.compare(old_props[name], other, child(name), depth + 1)
        for name in sorted(set(new_props) - set(old_props) - new_req):
            self.compatible.append(Change(child(name), "new optional field"))
        for name in sorted(set(old_props) & set(new_props)):
            self.compare(old_props[name], new_props[name], child(name), depth + 1)
        before = self._others(old)
        if other is False and before is not False:
            self.breaking.append(Change(field or "(the whole request)",
                                        "fields it does not declare are refused now (additionalProperties: false)"))
        elif before is False and other is not False:
            self.compatible.append(Change(field or "(the whole request)", "fields it does not declare are accepted now"))
        elif isinstance(before, dict) and other is not False and other is not True:
            self.compare(before, other, f"{field or '(the whole request)'} (other fields)", depth + 1)

    @staticmethod
    def _others(schema: dict) -> Any:
        """What a property the schema does not declare must satisfy: True (anything), False, or a schema."""
        for key in ("additionalProperties", "unevaluatedProperties"):
            value = schema.get(key)
            if value is False or isinstance(value, dict):
                return value
        return True

    def _arrays(self, old: dict, new: dict, field: str, depth: int) -> None:
        if "items" in new or "items" in old:
            self.compare(old.get("items", True), new.get("items", True), f"{field}[]", depth + 1)
        old_prefix, new_prefix = old.get("prefixItems") or [], new.get("prefixItems") or []
        for i in range(max(len(old_prefix), len(new_prefix))):
            a = old_prefix[i] if i < len(old_prefix) else old.get("items", True)
            b = new_prefix[i] if i < len(new_prefix) else new.get("items", True)
            self.compare(a, b, f"{field}[{i}]", depth + 1)


_APPLIES = {"minLength": "string", "maxLength": "string", "minItems": "array", "maxItems": "array",
            "minProperties": "object", "maxProperties": "object"}


def _may_be(schema: dict, kind: str) -> bool:
    """Whether instances of `kind` (JSON's types; "number" includes integers) can pass the schema's type."""
    t = schema.get("type")
    if t is None:
        return True
    kinds = {t} if isinstance(t, str) else set(t)
    return kind in kinds or (kind == "number" and "integer" in kinds)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _divides(new: float, old: float) -> bool:
    """Every multiple of `old` is a multiple of `new` (so the new multipleOf refuses nothing the old accepted)."""
    if new == 0:
        return False
    ratio = old / new
    return abs(ratio - round(ratio)) < 1e-9


def _constraining(schema: dict) -> bool:
    return any(key not in _ANNOTATIONS for key in schema)


def compare(old: Any, new: Any) -> tuple[list[Change], list[Change]]:
    """(breaking, compatible) changes from production's request schema `old` to the candidate's `new`.

    Breaking: a request production accepts could be refused (a new required field, a removed field where
    undeclared fields are refused, a narrowed type or enum, a tighter bound, a new or changed pattern, a keyword
    this comparison does not understand). Alternatives (anyOf, oneOf; pydantic's Optional) match branch by branch;
    $ref inside the schema is followed.
    """
    comparer = _Comparer(resolver(old) if isinstance(old, dict) else None,
                         resolver(new) if isinstance(new, dict) else None)
    comparer.compare(old, new, "")
    for changes in (comparer.breaking, comparer.compatible):
        for i, c in enumerate(changes):
            if not c.field:
                changes[i] = Change("(the whole request)", c.change)
    return comparer.breaking, comparer.compatible
