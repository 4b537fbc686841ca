"""JSON Schema -> GBNF: every grammar compiles in llama.cpp; strict refusals name the keywords."""

from __future__ import annotations

import json

import llama_cpp
import pytest

from tiergate.errors import InvalidRequest
from tiergate.generation.json_schema import (
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


def compiles(grammar: str) -> bool:
    return llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None


def test_strict_schema_with_refs_recursion_enums_and_anyof_compiles() -> None:
    check_schema(RECURSIVE, strict=True, param="p")
    grammar = schema_grammar(RECURSIVE)
    assert compiles(grammar)
    assert "schema-root" in grammar or "schema-" in grammar


def test_json_object_grammar_compiles_and_forbids_raw_control_characters_in_strings() -> None:
    grammar = json_object_grammar()
    assert compiles(grammar)
    assert "\\x00-\\x1F" in grammar


def test_optional_properties_compile_for_non_strict_schemas() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["b"],
    }
    check_schema(schema, strict=False, param="p")
    assert compiles(schema_grammar(schema))


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


def test_literal_escapes_quotes_backslashes_and_newlines() -> None:
    assert literal('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    quoted = literal(json.dumps('say "hi"'))
    assert compiles(f"root ::= {quoted}\n")


def test_validation_error_points_at_the_failing_field() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert validation_error({"n": 1}, schema) is None
    reason = validation_error({"n": "x"}, schema)
    assert reason is not None and "n" in reason
