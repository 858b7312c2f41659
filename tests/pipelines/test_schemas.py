"""The request and response schemas (dags/modelbot_schemas.py): the schemas themselves, what they refuse (row,
field and rule named), and the request schema's compatibility with production's, field by field. Pure: no AWS."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.pipelines import dag_file

schemas = dag_file.load().schemas

BASE = {
    "type": "object",
    "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "plan": {"enum": ["basic", "pro", "legacy"]},
        "note": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["age"],
}


def changes(old, new) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    breaking, compatible = schemas.compare(old, new)
    return [(c.field, c.change) for c in breaking], [(c.field, c.change) for c in compatible]


def with_(base: dict, **props) -> dict:
    """base with its properties replaced or added (None removes one)."""
    out = {**base, "properties": dict(base["properties"])}
    for name, schema in props.items():
        if schema is None:
            out["properties"].pop(name)
        else:
            out["properties"][name] = schema
    return out


# ---------------------------------------------------------------- the schemas themselves

@pytest.mark.parametrize("schema, instance, expected", [
    ({"type": "object"}, True, None),
    ({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}, True, None),
    ({"type": "number"}, False, None),
    ([1, 2], True, "REQUEST_SCHEMA is a list; it must be a JSON Schema (a dict"),
    ({"type": "array"}, True, "REQUEST_SCHEMA has type 'array'; one request instance is an object"),
    ({"type": "object", "properties": {"age": {"type": "integr"}}}, True,
     "REQUEST_SCHEMA is not a valid JSON Schema (draft 2020-12): at properties.age.type: 'integr' is not valid"),
    ({"properties": {"a": {"$ref": "#/$defs/Missing"}}}, True,
     "REQUEST_SCHEMA refers to '#/$defs/Missing', which is not inside the schema"),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}, True,
     "REQUEST_SCHEMA declares $schema 'http://json-schema.org/draft-07/schema#'; modelbot validates with draft "
     "2020-12"),
    ({"type": "object", "properties": {"a": {"minimum": float("nan")}}}, True, "REQUEST_SCHEMA is not plain JSON"),
])
def test_a_schema_is_checked_before_anything_runs(schema, instance, expected):
    problems = schemas.schema_problems("REQUEST_SCHEMA", schema, instance=instance)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_pydantic_models_schema_is_accepted_and_compared():
    from pydantic import BaseModel, ConfigDict

    class Address(BaseModel):
        zip: str

    class Customer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tenure: float
        address: Address | None = None

    class CustomerV2(Customer):
        country: str  # a new required field

    old, new = Customer.model_json_schema(), CustomerV2.model_json_schema()
    assert schemas.schema_problems("REQUEST_SCHEMA", old, instance=True) == []
    assert changes(old, old) == ([], [])
    breaking, _ = changes(old, new)
    assert breaking == [("country", "new required field")]


def test_refusals_name_the_row_the_field_and_the_rule():
    check = schemas.validator({**BASE, "additionalProperties": False})
    rows = [{"age": 30}, {"age": -1, "plan": "gold"}, {"plan": "pro"}, {"age": 30, "zip": "1000"},
            {"age": 30, "note": 7}]
    refused = schemas.refusals(check, rows, [f"validation row {i}" for i in range(len(rows))])
    assert (refused.refused, refused.total) == (4, 5)
    assert refused.lines[0] == ("validation row 1: age: -1 is less than the minimum of 0 (rule minimum: 0); "
                                "plan: 'gold' is not one of ['basic', 'pro', 'legacy'] "
                                "(rule enum: [\"basic\", \"pro\", \"legacy\"])")
    assert refused.lines[1] == 'validation row 2: age: is required and missing (rule required: ["age"])'
    assert refused.lines[2].startswith("validation row 3: (the whole instance): Additional properties are not "
                                       "allowed ('zip' was unexpected) (rule additionalProperties: false)")
    assert refused.lines[3].startswith("validation row 4: note: 7 is not valid under any of the given schemas; "
                                       "closest: 7 is not of type")
    assert "(rule anyOf:" in refused.lines[3]


def test_refusals_show_the_first_few_and_count_them_all():
    check = schemas.validator({"type": "number", "maximum": 1})
    refused = schemas.refusals(check, [2.0] * 50, [f"prediction {i}" for i in range(50)], show=5)
    assert refused.refused == 50 and len(refused.lines) == 5


# ---------------------------------------------------------------- compatibility, field by field

@pytest.mark.parametrize("new, expected", [
    (with_({**BASE, "required": ["age", "tenure"]}, tenure={"type": "number"}), ("tenure", "new required field")),
    ({**BASE, "required": ["age", "plan"]}, ("plan", "now required (production accepts requests without it)")),
    (with_(BASE, age={"type": "integer", "minimum": 18, "maximum": 120}),
     ("age", "lower bound tightened: >= 0 -> >= 18")),
    (with_(BASE, age={"type": "integer", "minimum": 0, "exclusiveMaximum": 120}),
     ("age", "upper bound tightened: <= 120 -> < 120")),
    (with_(BASE, age={"type": "string"}), ("age", "type narrowed: integer -> string (integer no longer accepted)")),
    (with_(BASE, plan={"enum": ["basic", "pro"]}), ("plan", 'enum narrowed: "legacy" no longer accepted')),
    (with_(BASE, note={"type": "string", "maxLength": 20}),
     ("note", "type narrowed: null -> string (null no longer accepted)")),
    (with_(BASE, note={"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]}),
     ("note", "maxLength tightened: 20 -> 10")),
    (with_(BASE, tags={"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "maxItems": 3}),
     ("tags[]", 'pattern changed: null -> "^[a-z]+$"')),
    (with_(BASE, tags={"type": "array", "items": {"type": "string"}, "maxItems": 2}),
     ("tags", "maxItems tightened: 3 -> 2")),
    ({**BASE, "not": {"required": ["plan"]}},
     ("(the whole request)", "`not` changed; modelbot cannot tell whether that refuses requests production "
                             "accepts, so it counts as breaking")),
])
def test_what_production_accepts_and_the_candidate_would_refuse_is_breaking(new, expected):
    breaking, _ = changes(BASE, new)
    assert breaking == [expected]


@pytest.mark.parametrize("new, expected", [
    (with_(BASE, country={"type": "string"}), ("country", "new optional field")),
    ({**BASE, "required": []}, ("age", "no longer required")),
    (with_(BASE, tags=None), ("tags", "no longer declared (still accepted)")),
    (with_(BASE, age={"type": "number", "minimum": 0, "maximum": 120}), ("age", "type widened: integer -> number")),
    (with_(BASE, plan={"enum": ["basic", "pro", "legacy", "gold"]}), ("plan", 'enum widened: "gold" now accepted too')),
    (with_(BASE, age={"type": "integer", "minimum": -5, "maximum": 120}),
     ("age", "lower bound relaxed: >= 0 -> >= -5")),
])
def test_what_only_widens_is_compatible_and_listed(new, expected):
    breaking, compatible = changes(BASE, new)
    assert breaking == [] and compatible == [expected]


def test_a_field_removed_from_a_closed_schema_is_breaking_and_so_is_closing_it():
    breaking, _ = changes(BASE, with_({**BASE, "additionalProperties": False}, tags=None))
    assert breaking == [
        ("tags", "removed: requests that send it are refused now (additional properties are not allowed)"),
        ("(the whole request)", "fields it does not declare are refused now (additionalProperties: false)")]


def test_references_are_followed_on_both_sides():
    old = {"type": "object", "$defs": {"Plan": {"enum": ["basic", "pro"]}},
           "properties": {"plan": {"$ref": "#/$defs/Plan"}}}
    new = {"type": "object", "$defs": {"Plan": {"enum": ["basic"]}, "P2": {"$ref": "#/$defs/Plan"}},
           "properties": {"plan": {"$ref": "#/$defs/P2", "description": "the plan"}}}
    assert changes(old, new)[0] == [("plan", 'enum narrowed: "pro" no longer accepted')]


def test_annotations_do_not_count():
    new = with_({**BASE, "title": "Customer", "description": "v2"},
                age={"type": "integer", "minimum": 0, "maximum": 120, "description": "years", "examples": [3],
                     "format": "int32"})
    assert changes(BASE, new) == ([], [])


# Compatible edits the comparison must call compatible, and which must in fact refuse nothing old accepted.
WIDENINGS = [
    lambda s: {**s, "required": []},
    lambda s: with_(s, age={"type": "number"}),
    lambda s: with_(s, plan={"enum": ["basic", "pro", "legacy", "gold"]}),
    lambda s: with_(s, note={"anyOf": [{"type": "string"}, {"type": "null"}, {"type": "integer"}]}),
    lambda s: with_(s, extra={"type": "boolean"}),
    lambda s: with_(s, tags={"type": "array", "items": {"type": "string"}}),
]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=5)
# Requests BASE accepts: its fields within their rules, any other field with any JSON value.
BASE_REQUESTS = st.builds(
    lambda fields, extra: {**extra, **fields},
    st.fixed_dictionaries({"age": st.integers(0, 120)}, optional={
        "plan": st.sampled_from(["basic", "pro", "legacy"]),
        "note": st.none() | st.text(max_size=20),
        "tags": st.lists(st.text(max_size=4), max_size=3)}),
    st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in BASE["properties"]), JSON,
                    max_size=2))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=BASE_REQUESTS, picks=st.sets(st.integers(0, len(WIDENINGS) - 1), min_size=1))
def test_a_change_called_compatible_accepts_every_request_production_accepts(request, picks):
    assert not list(schemas.validator(BASE).iter_errors(request)), request
    new = BASE
    for i in sorted(picks):
        new = WIDENINGS[i](new)
    assert changes(BASE, new)[0] == []
    assert not list(schemas.validator(new).iter_errors(request)), request
