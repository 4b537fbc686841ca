"""Turn a chat request's output options into an OutputPlan: the spec's rules, and their 400s.

Everything here is decided before admission, so a bad combination costs no slot and no tokens:
response_format (JSON mode, structured outputs), tools and tool_choice (with the deprecated
functions/function_call mapped onto them), and the reasoning options (spec §8.1 to 8.4). Where a
think block may sit is only known after templating: `fit_to_prompt` completes the plan then.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tiergate.engines.base import ModelSpec
from tiergate.errors import InvalidRequest
from tiergate.generation.json_schema import GrammarBuilder, check_schema, json_object_grammar, schema_grammar
from tiergate.generation.output import OutputPlan
from tiergate.generation.reasoning import THINK_CLOSE, THINK_OPEN
from tiergate.generation.tool_calls import ToolSpec, tool_call_grammar
from tiergate.schemas.chat import ChatCompletionRequest, FunctionDefinition


@dataclass(frozen=True)
class _Tools:
    definitions: list[FunctionDefinition]
    choice: str  # none | auto | required
    named: str | None
    legacy: bool
    param: str


def plan_output(
    request: ChatCompletionRequest, spec: ModelSpec
) -> tuple[OutputPlan, list[dict[str, Any]] | None]:
    """The plan for this request, and the tools to show the chat template (None: no tools)."""
    tools = _tools(request)
    fmt = request.response_format.type if request.response_format else "text"
    calls_possible = tools is not None and tools.choice != "none"
    if fmt == "json_schema" and calls_possible:
        raise InvalidRequest(
            "`response_format` json_schema cannot be combined with tool use.",
            param="response_format",
            code="invalid_value",
        )
    reasoning = _reasoning_mode(request, spec, json_or_tools=fmt != "text" or calls_possible)

    json_kind: str | None = None
    schema: dict[str, Any] | None = None
    content_grammar: str | None = None
    if fmt == "json_object":
        json_kind = "object"
        content_grammar = json_object_grammar()
    elif fmt == "json_schema":
        assert request.response_format is not None and request.response_format.json_schema is not None
        spec_js = request.response_format.json_schema
        param = "response_format.json_schema.schema"
        if spec_js.schema_ is None:
            json_kind, content_grammar = "object", json_object_grammar()
        else:
            strict = bool(spec_js.strict)
            check_schema(spec_js.schema_, strict=strict, param=param)
            json_kind, schema = "schema", spec_js.schema_
            content_grammar = _grammar_or_400(lambda: schema_grammar(spec_js.schema_ or {}), param)

    specs: tuple[ToolSpec, ...] = ()
    template_tools: list[dict[str, Any]] | None = None
    grammar = content_grammar
    if tools is not None and calls_possible:
        for i, fn in enumerate(tools.definitions):
            if fn.parameters is not None:
                check_schema(fn.parameters, strict=bool(fn.strict), param=f"{tools.param}[{i}].parameters")
        specs = tuple(ToolSpec(fn.name, fn.parameters) for fn in tools.definitions)
        template_tools = [
            {"type": "function", "function": fn.model_dump(exclude_none=True)} for fn in tools.definitions
        ]
        forced = [s for s in specs if s.name == tools.named] if tools.named else list(specs)
        mode = "required" if tools.choice == "required" or tools.named else "auto"
        parallel = request.parallel_tool_calls is not False and not tools.legacy and not tools.named
        content_rule = None
        builder = GrammarBuilder()
        if content_grammar is not None:
            content_rule = builder.primitive("object")
        grammar = _grammar_or_400(
            lambda: tool_call_grammar(
                forced, mode=mode, parallel=parallel, content_rule=content_rule, builder=builder
            ),
            tools.param,
        )
    plan = OutputPlan(
        answer_grammar=grammar,
        json=json_kind,
        schema=schema,
        tools=specs,
        check_tool_names=not request.disable_tool_validation,
        reasoning=reasoning,
        # Spec: reasoning_effort "none" disables reasoning, "the model will not use any reasoning tokens".
        skip_thinking=reasoning is not None and request.reasoning_effort == "none",
        legacy_functions=tools is not None and tools.legacy,
    )
    return plan, template_tools


def asked_max_tokens(request: ChatCompletionRequest, spec: ModelSpec) -> int | None:
    """The completion tokens the request asks for (None: not set); 400 above the model's maximum."""
    asked = request.requested_max_tokens
    if asked is not None and asked > spec.max_completion_tokens:
        param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        raise InvalidRequest(
            f"`{param}` must be less than or equal to `{spec.max_completion_tokens}`, the maximum value "
            f"for `{param}` is less than the `context_window` for this model",
            param=param,
            code="invalid_value",
        )
    return asked


def fit_to_prompt(plan: OutputPlan, prompt_text: str, prefill: str | None) -> OutputPlan:
    """Where the templated prompt leaves a reasoning model: before, inside or past its think block.

    `prefill`: the assistant text the prompt ends in (None when there is none). A prefill that opens
    `<think>` without closing it continues the thinking; any other non-empty prefill is the answer.
    """
    if plan.reasoning is None:
        return plan
    if prefill and prefill.strip():
        inside = prefill.rfind(THINK_OPEN) > prefill.rfind(THINK_CLOSE)
        return dataclasses.replace(plan, starts_inside_think=inside, answering=not inside)
    return dataclasses.replace(plan, starts_inside_think=starts_inside_think(prompt_text))


def starts_inside_think(prompt_text: str) -> bool:
    """The template opened the think block itself (the prompt ends in `<think>`)."""
    return prompt_text.rstrip().endswith(THINK_OPEN)


def _tools(request: ChatCompletionRequest) -> _Tools | None:
    if request.tools and request.functions:
        raise InvalidRequest("Use either `tools` or the deprecated `functions`, not both.", param="functions")
    if request.functions:
        choice = request.function_call
        named = choice.name if choice is not None and not isinstance(choice, str) else None
        mode = choice if isinstance(choice, str) else "auto"
        tools = _Tools(list(request.functions), mode, named, True, "functions")
    elif request.tools:
        definitions = [tool.function for tool in request.tools if tool.function is not None]
        choice = request.tool_choice
        named = choice.function.name if choice is not None and not isinstance(choice, str) else None
        mode = choice if isinstance(choice, str) else "auto"
        tools = _Tools(definitions, mode, named, False, "tools")
    else:
        if request.tool_choice not in (None, "none") or request.function_call not in (None, "none"):
            param = "tool_choice" if request.tool_choice is not None else "function_call"
            raise InvalidRequest(
                f"`{param}` needs `tools` to choose from.", param=param, code="invalid_value"
            )
        return None
    names = [fn.name for fn in tools.definitions]
    if len(set(names)) != len(names):
        raise InvalidRequest("Tool names must be unique.", param=tools.param, code="invalid_value")
    if tools.named is not None and tools.named not in names:
        param = "function_call" if tools.legacy else "tool_choice"
        raise InvalidRequest(
            f"`{param}` names `{tools.named}`, which is not one of the tools offered.", param=param
        )
    return tools


def _reasoning_mode(request: ChatCompletionRequest, spec: ModelSpec, *, json_or_tools: bool) -> str | None:
    """The reasoning options -> raw, parsed or hidden (None: the model does not reason)."""
    fmt, include, effort = request.reasoning_format, request.include_reasoning, request.reasoning_effort
    if fmt is not None and include is not None:
        raise InvalidRequest(
            "`include_reasoning` and `reasoning_format` are mutually exclusive; send one of them.",
            param="include_reasoning",
            code="invalid_value",
        )
    if not spec.reasoning:
        # Asking for no reasoning from a model that does not reason is a no-op, not an error.
        asked = [
            name
            for name, value, harmless in (
                ("reasoning_format", fmt, None),
                ("include_reasoning", include, False),
                ("reasoning_effort", effort, "none"),
            )
            if value is not None and value != harmless
        ]
        if asked:
            raise InvalidRequest(
                f"`{asked[0]}` is not supported with model `{spec.id}`: it is not a reasoning model.",
                param=asked[0],
                code="invalid_value",
            )
        return None
    if fmt == "raw" and json_or_tools:
        raise InvalidRequest(
            "reasoning_format `raw` is not supported with JSON mode or tool use; use `parsed` or `hidden`.",
            param="reasoning_format",
            code="invalid_value",
        )
    if effort == "none":
        return "hidden"  # there is no thinking to show: only the empty block, which is dropped
    if fmt is not None:
        return fmt
    if include is not None:
        return "parsed" if include else "hidden"
    return "parsed" if json_or_tools else "raw"


def _grammar_or_400(make: Any, param: str) -> str:
    try:
        return make()
    except InvalidRequest as exc:
        exc.param = param
        raise
    except (RecursionError, ValueError, TypeError, KeyError):
        raise InvalidRequest(
            "This JSON schema cannot be turned into a generation constraint.",
            param=param,
            code="invalid_value",
        ) from None
