"""JSON Schema -> GBNF grammar, and the check that a schema lies inside the subset we can enforce.

Why our own converter rather than llama.cpp's `json_schema_to_gbnf`: that one lets raw control
characters into strings (json.loads rejects them), cannot resolve the recursive root `"$ref": "#"`
the spec shows, and silently ignores keywords it cannot enforce. Here a strict schema either
compiles to a grammar whose every output validates, or it is refused with the keywords named.

Strict subset (GroqCloud's structured outputs): type string/number/integer/boolean/null/object/array
(or a list of those), properties with every property required and additionalProperties false,
items (+ minItems/maxItems), enum, const, anyOf, $ref into $defs/definitions (recursion allowed),
format date/time/date-time/uuid, and annotations (description, title, default, examples, $schema,
$id, $comment). Non-strict schemas compile best effort: unknown keywords are ignored by the grammar
and caught afterwards by validation.

Array bounds are checked in both modes: minItems above maxItems would make llama.cpp's grammar parser
loop forever on `{n,m}` with m < n, and it refuses repetitions above ~2000, so a minItems above
MAX_GRAMMAR_ITEMS is a 400 and a maxItems above it is left to the validation after generation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema

from tiergate.errors import InvalidRequest

_ANNOTATIONS = {"description", "title", "default", "examples", "$schema", "$id", "$comment", "deprecated"}
_STRUCTURAL = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "$ref",
    "$defs",
    "definitions",
    "format",
}
SUPPORTED_KEYWORDS = frozenset(_ANNOTATIONS | _STRUCTURAL)
# Largest array bound written into a grammar; llama.cpp refuses repetitions above 2000.
MAX_GRAMMAR_ITEMS = 1000
_TYPES = ("string", "number", "integer", "boolean", "null", "object", "array")
_FORMATS = ("date", "time", "date-time", "uuid")

# Whitespace is at most one space per slot: with room for newlines and indentation a small model
# sampled at temperature 0.7 was seen spending its whole budget on tabs between two members.
_PRIMITIVES: dict[str, str] = {
    "ws": '" "?',
    "char": '[^"\\\\\\x00-\\x1F\\x7F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": '"\\"" char* "\\""',
    "integer": '"-"? ("0" | [1-9] [0-9]{0,15})',
    "number": 'integer ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws (string ws ":" ws value (ws "," ws string ws ":" ws value)*)? ws "}"',
    "array": '"[" ws (value (ws "," ws value)*)? ws "]"',
    "date": '[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
    "time": '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? '
    '("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])',
    "hex4": "[0-9a-fA-F]{4}",
    "uuid": '"\\"" hex4 hex4 "-" hex4 "-" hex4 "-" hex4 "-" hex4 hex4 hex4 "\\""',
    "date-string": '"\\"" date "\\""',
    "time-string": '"\\"" time "\\""',
    "date-time-string": '"\\"" date "T" time "\\""',
}
_DEPENDS = {
    "string": ["char"],
    "number": ["integer"],
    "value": ["object", "array", "string", "number", "boolean", "null"],
    "object": ["ws", "string", "value"],
    "array": ["ws", "value"],
    "uuid": ["hex4"],
    "date-string": ["date"],
    "time-string": ["time"],
    "date-time-string": ["date", "time"],
}


def literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def check_schema(schema: Any, *, strict: bool, param: str) -> None:
    """400 unless `schema` is a valid JSON Schema (and, when strict, inside the enforceable subset)."""
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be an object.", param=param, code="invalid_value")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise InvalidRequest(
            f"The JSON schema is invalid at `{where}`: {exc.message}", param=param, code="invalid_value"
        ) from None
    bounds = next(_bound_problems(schema, "#"), None)
    if bounds is not None:
        raise InvalidRequest(
            f"This JSON schema cannot be generated: {bounds}.", param=param, code="invalid_value"
        )
    if not strict:
        return
    problems = sorted(set(_strict_problems(schema, "#")))
    if problems:
        listed = "; ".join(problems[:8])
        raise InvalidRequest(
            f"This JSON schema is not supported with strict: true: {listed}. Supported keywords: "
            f"{', '.join(sorted(SUPPORTED_KEYWORDS))}.",
            param=param,
            code="invalid_value",
        )


# Keywords whose values are data, not subschemas: a `minItems` inside them is not a bound.
_DATA_KEYWORDS = ("enum", "const", "default", "examples")


def _bound_problems(node: Any, path: str) -> Iterator[str]:
    """Array bounds no grammar can hold, wherever a subschema sits."""
    if isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _bound_problems(sub, f"{path}/{index}")
        return
    if not isinstance(node, dict):
        return
    low, high = node.get("minItems"), node.get("maxItems")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        yield f"`minItems` ({low}) is greater than `maxItems` ({high}) at `{path}`"
    if isinstance(low, int) and low > MAX_GRAMMAR_ITEMS:
        yield f"`minItems` ({low}) is above {MAX_GRAMMAR_ITEMS} at `{path}`"
    for key, sub in node.items():
        if key not in _DATA_KEYWORDS:
            yield from _bound_problems(sub, f"{path}/{key}")


def _strict_problems(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, bool):
        yield f"boolean schema at `{path}`"
        return
    if not isinstance(node, dict):
        return
    for key in node:
        if key not in SUPPORTED_KEYWORDS:
            yield f"keyword `{key}` at `{path}`"
    types = node.get("type")
    for kind in types if isinstance(types, list) else [types] if types else []:
        if kind not in _TYPES:
            yield f"type `{kind}` at `{path}`"
    if "format" in node and node["format"] not in _FORMATS:
        yield f"format `{node['format']}` at `{path}`"
    if "$ref" in node and not str(node["$ref"]).startswith("#"):
        yield f"remote $ref `{node['$ref']}` at `{path}`"
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node
    if is_object:
        if node.get("additionalProperties", True) is not False:
            yield f"`additionalProperties` must be false at `{path}`"
        missing = set(node.get("properties", {})) - set(node.get("required", []))
        if missing:
            yield f"all properties must be required at `{path}` (missing: {', '.join(sorted(missing))})"
    for name, sub in (node.get("properties") or {}).items():
        yield from _strict_problems(sub, f"{path}/properties/{name}")
    for key in ("$defs", "definitions"):
        for name, sub in (node.get(key) or {}).items():
            yield from _strict_problems(sub, f"{path}/{key}/{name}")
    for index, sub in enumerate(node.get("anyOf") or []):
        yield from _strict_problems(sub, f"{path}/anyOf/{index}")
    if isinstance(node.get("items"), dict):
        yield from _strict_problems(node["items"], f"{path}/items")
    elif "items" in node:
        yield f"tuple `items` at `{path}`"


class GrammarBuilder:
    """Accumulates GBNF rules; several schemas (one per tool) can share one grammar."""

    def __init__(self) -> None:
        self._rules: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        """Add a rule under a fresh name derived from `name`; returns the name used."""
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-").lower() or "r"
        unique, n = base, 1
        while unique in self._rules or unique in _PRIMITIVES:
            unique, n = f"{base}-{n}", n + 1
        self._rules[unique] = body
        return unique

    def set(self, name: str, body: str) -> None:
        self._rules[name] = body

    def primitive(self, name: str) -> str:
        """Reference a built-in rule (string, number, value, ...), pulling in its dependencies."""
        if name not in self._rules:
            self._rules[name] = _PRIMITIVES[name]
            for dep in _DEPENDS.get(name, ()):
                self.primitive(dep)
        return name

    def text_without(self, name: str, tag: str) -> str:
        """A rule for any text (no NUL) in which `tag` never occurs; returns its name.

        One rule per state of the automaton that has matched the first k characters of `tag`, each
        right-recursive (llama.cpp keeps its stack flat for a reference at the end of a sequence).
        Needs `tag[0]` not to occur again inside `tag`, so that a mismatch can only restart there.
        """
        first, rest = tag[0], tag[1:]
        assert first not in rest and all(c not in "]\\^-" for c in tag)
        states = [self.add(f"{name}-s{k}", "") for k in range(len(tag))]
        for k, state in enumerate(states):
            if k == 0:
                options = [f"[^{first}\\x00] {state}", f"{literal(first)} {states[1]}"]
            else:
                nxt = tag[k]
                options = [f"[^{nxt}{first}\\x00] {states[0]}", f"{literal(first)} {states[1]}"]
                if k + 1 < len(tag):
                    options.insert(0, f"{literal(nxt)} {states[k + 1]}")
            self.set(state, f"({' | '.join(options)})?")
        return states[0]

    def schema(self, schema: dict[str, Any], name: str) -> str:
        """Add rules for a JSON value matching `schema`; returns the rule to reference."""
        return _SchemaVisitor(self, schema, name).visit(schema, name)

    def render(self, root_body: str, *, ws: bool = True) -> str:
        """The grammar text, root first; `ws=False` when it is glued onto a grammar that has `ws`."""
        if ws:
            self.primitive("ws")
        lines = [f"root ::= {root_body}"]
        lines += [f"{name} ::= {body}" for name, body in self._rules.items()]
        return "\n".join(lines) + "\n"


class _SchemaVisitor:
    """Walks one schema document; $ref targets become named rules so recursion terminates."""

    def __init__(self, builder: GrammarBuilder, document: dict[str, Any], name: str) -> None:
        self.b = builder
        self.document = document
        self.name = name
        self.refs: dict[str, str] = {}

    def visit(self, node: Any, name: str) -> str:
        if node is True or node == {}:
            return self.b.primitive("value")
        if not isinstance(node, dict):
            raise InvalidRequest(f"Unsupported schema at `{name}`.", code="invalid_value")
        if "$ref" in node:
            return self._ref(node["$ref"])
        if "const" in node:
            return self.b.add(name, literal(json.dumps(node["const"], ensure_ascii=False)))
        if "enum" in node:
            options = [literal(json.dumps(v, ensure_ascii=False)) for v in node["enum"]]
            return self.b.add(name, " | ".join(options))
        if "anyOf" in node:
            branches = [
                self.visit({**_siblings(node), **sub}, f"{name}-{i}") for i, sub in enumerate(node["anyOf"])
            ]
            return self.b.add(name, " | ".join(branches))
        kind = node.get("type")
        if isinstance(kind, list):
            branches = [self.visit({**node, "type": k}, f"{name}-{k}") for k in kind]
            return self.b.add(name, " | ".join(branches))
        if kind == "object" or (kind is None and "properties" in node):
            return self._object(node, name)
        if kind == "array" or (kind is None and "items" in node):
            return self._array(node, name)
        if kind == "string":
            fmt = node.get("format")
            return self.b.primitive(
                f"{fmt}-string"
                if fmt in ("date", "time", "date-time")
                else fmt
                if fmt == "uuid"
                else "string"
            )
        if kind in ("number", "integer", "boolean", "null"):
            return self.b.primitive(kind)
        return self.b.primitive("value")

    def _ref(self, ref: str) -> str:
        if ref in self.refs:
            return self.refs[ref]
        target = self._resolve(ref)
        rule = self.b.add(f"{self.name}-{ref.rsplit('/', 1)[-1] or 'root'}", "")
        self.refs[ref] = rule
        self.b.set(rule, self.visit(target, f"{rule}-def"))
        return rule

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise InvalidRequest(f"Remote $ref `{ref}` is not supported.", code="invalid_value")
        target: Any = self.document
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise InvalidRequest(f"$ref `{ref}` does not resolve.", code="invalid_value")
            target = target[part]
        return target

    def _object(self, node: dict[str, Any], name: str) -> str:
        properties: dict[str, Any] = node.get("properties") or {}
        if not properties:
            if node.get("additionalProperties") is False:
                return self.b.add(name, '"{" ws "}"')
            return self.b.primitive("object")
        self.b.primitive("ws")
        required = set(node.get("required") or [])
        members = []
        for key, sub in properties.items():
            value = self.visit(sub, f"{name}-{key}")
            members.append(
                (f'{literal(json.dumps(key, ensure_ascii=False))} ws ":" ws {value}', key in required)
            )
        return self.b.add(name, f'"{{" ws {self._members(members, name)} ws "}}"')

    def _members(self, members: list[tuple[str, bool]], name: str) -> str:
        """Properties in declared order; optional ones may be skipped, commas only between present ones.

        rest(i, comma) names the rule for members i.. given whether one was already written: at most
        2n rules, where inlining both branches would grow as 2^n.
        """
        memo: dict[tuple[int, bool], str] = {}

        def rest(i: int, comma: bool) -> str:
            if i == len(members):
                return ""
            if (i, comma) in memo:
                return memo[(i, comma)]
            member, is_required = members[i]
            sep = '"," ws ' if comma else ""
            after = rest(i + 1, True)
            present = f"{sep}{member} ws {after}".strip()
            if is_required:
                body = present
            else:
                skipped = rest(i + 1, comma)
                body = f"({present}) | ({skipped})" if skipped else f"({present})?"
            memo[(i, comma)] = self.b.add(f"{name}-m{i}{'c' if comma else ''}", body)
            return memo[(i, comma)]

        return rest(0, False)

    def _array(self, node: dict[str, Any], name: str) -> str:
        item = self.visit(node.get("items", True), f"{name}-item")
        low = int(node.get("minItems", 0))
        high = node.get("maxItems")
        if high is not None and int(high) > MAX_GRAMMAR_ITEMS:
            high = None  # not written into the grammar; validation after generation holds it
        if low > MAX_GRAMMAR_ITEMS or (high is not None and low > int(high)):
            raise InvalidRequest(f"The array bounds at `{name}` cannot be generated.", code="invalid_value")
        tail = f'(ws "," ws {item})'
        if high is not None and int(high) == 0:
            return self.b.add(name, '"[" ws "]"')
        more = f"{{{max(low - 1, 0)},{int(high) - 1}}}" if high is not None else f"{{{max(low - 1, 0)},}}"
        seq = f"{item} {tail}{more}"
        body = f'"[" ws {seq} ws "]"' if low > 0 else f'"[" ws ({seq})? ws "]"'
        return self.b.add(name, body)


def _siblings(node: dict[str, Any]) -> dict[str, Any]:
    """Keywords next to anyOf that each branch inherits (e.g. a shared `type`)."""
    return {k: v for k, v in node.items() if k not in ("anyOf", "$defs", "definitions", *_ANNOTATIONS)}


def schema_grammar(schema: dict[str, Any]) -> str:
    """A complete grammar whose sentences are JSON documents matching `schema`."""
    builder = GrammarBuilder()
    return builder.render(builder.schema(schema, "schema"))


def json_object_grammar() -> str:
    """JSON mode: any single JSON object."""
    builder = GrammarBuilder()
    return builder.render(builder.primitive("object"))


def validation_error(instance: Any, schema: dict[str, Any]) -> str | None:
    """None if `instance` validates against `schema`, else a short reason."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at `{where}`: {error.message}"
