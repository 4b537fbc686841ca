"""JSON Schema -> GBNF: every grammar compiles in llama.cpp; strict refusals name the keywords."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.grammar_check import Vocabulary, vocabulary
from tiergate.errors import InvalidRequest
from tiergate.generation.json_schema import (
    MAX_GRAMMAR_ITEMS,
    check_schema,
    json_object_grammar,
    literal,
    schema_grammar,
    validation_error,
)

RECURSIVE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "kind": {"enum": ["a", "b"]},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
        "node": {"$ref": "#/$defs/node"},
    },
    "required": ["name", "when", "tags", "kind", "maybe", "child", "node"],
    "additionalProperties": False,
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"v": {"type": ["number", "boolean"]}, "k": {"const": "x"}},
            "required": ["v", "k"],
            "additionalProperties": False,
        }
    },
}


@pytest.fixture(scope="module")
def vocab(models_dir: Path) -> Vocabulary:
    return vocabulary(models_dir)


def test_strict_schema_with_refs_recursion_enums_and_anyof_compiles(vocab: Vocabulary) -> None:
    check_schema(RECURSIVE, strict=True, param="p")
    grammar = schema_grammar(RECURSIVE)
    assert vocab.compiles(grammar)
    node = {"v": True, "k": "x"}
    leaf = {"name": "b", "when": "2024-01-02T03:04:05Z", "tags": ["t"], "kind": "b", "maybe": None}
    value = {**leaf, "child": {**leaf, "maybe": 3, "child": None, "node": node}, "node": node}
    assert validation_error(value, RECURSIVE) is None
    assert vocab.accepts(grammar, json.dumps(value))
    assert not vocab.accepts(grammar, json.dumps({**value, "kind": "c"}), complete=False)


def test_json_object_grammar_compiles_and_forbids_raw_control_characters_in_strings(
    vocab: Vocabulary,
) -> None:
    grammar = json_object_grammar()
    assert vocab.accepts(grammar, '{"a": [1, "x\\n"]}')
    assert not vocab.accepts(grammar, '{"a": "x\n"}', complete=False)


def test_optional_properties_compile_for_non_strict_schemas(vocab: Vocabulary) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["b"],
    }
    check_schema(schema, strict=False, param="p")
    grammar = schema_grammar(schema)
    assert vocab.accepts(grammar, '{"b": 1}') and vocab.accepts(grammar, '{"a": "x", "b": 1}')


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 1}, "`#`"),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"anyOf": [{"type": "array", "minItems": 5, "maxItems": 2}, {"type": "null"}]}
                },
                "required": ["a"],
                "additionalProperties": False,
            },
            "`#/properties/a/anyOf/0`",
        ),
        ({"type": "array", "items": {"type": "string"}, "minItems": MAX_GRAMMAR_ITEMS + 1}, "above"),
    ],
)
def test_array_bounds_no_grammar_can_hold_are_a_400_naming_the_field(
    schema: dict, named: str, strict: bool
) -> None:
    # minItems > maxItems made llama.cpp's grammar parser spin forever; a huge minItems failed to parse.
    with pytest.raises(InvalidRequest) as info:
        check_schema(schema, strict=strict, param="response_format.json_schema.schema")
    assert "minItems" in info.value.message and named in info.value.message
    assert info.value.param == "response_format.json_schema.schema"
    assert info.value.status == 400


def test_bounds_inside_data_keywords_are_not_schema_bounds() -> None:
    schema = {"type": "object", "properties": {}, "examples": [{"minItems": 5, "maxItems": 1}]}
    check_schema(schema, strict=False, param="p")


def test_array_bounds_are_enforced_by_the_grammar(vocab: Vocabulary) -> None:
    grammar = schema_grammar({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3})
    assert vocab.accepts(grammar, "[1, 2]") and vocab.accepts(grammar, "[1, 2, 3]")
    assert not vocab.accepts(grammar, "[1]")
    assert not vocab.accepts(grammar, "[1, 2, 3, 4]", complete=False)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "integer"}, "maxItems": 10**12},
        {"type": "array", "items": {"type": "integer"}, "minItems": MAX_GRAMMAR_ITEMS},
        {"type": "object", "properties": {"s": {"type": "string", "minLength": 10**9}}},
    ],
)
def test_huge_but_satisfiable_bounds_still_give_a_grammar_that_compiles(
    vocab: Vocabulary, schema: dict
) -> None:
    check_schema(schema, strict=False, param="p")
    grammar = schema_grammar(schema)
    assert vocab.compiles(grammar)
    assert str(10**12 - 1) not in grammar  # a maxItems above the cap is left to validation


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string", "pattern": "x"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "pattern",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
            "missing: a",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "additionalProperties",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "number", "minimum": 1}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "minimum",
        ),
    ],
)
def test_strict_schemas_outside_the_subset_are_refused_naming_the_problem(schema: dict, named: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_schema(schema, strict=True, param="response_format.json_schema.schema")
    assert named in info.value.message
    assert info.value.param == "response_format.json_schema.schema"


def test_an_invalid_json_schema_is_refused_even_when_not_strict() -> None:
    with pytest.raises(InvalidRequest):
        check_schema({"type": "nonsense"}, strict=False, param="p")


def test_literal_escapes_quotes_backslashes_and_newlines(vocab: Vocabulary) -> None:
    assert literal('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    quoted = literal(json.dumps('say "hi"'))
    assert vocab.accepts(f"root ::= {quoted}\n", json.dumps('say "hi"'))


def test_validation_error_points_at_the_failing_field() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert validation_error({"n": 1}, schema) is None
    reason = validation_error({"n": "x"}, schema)
    assert reason is not None and "n" in reason
