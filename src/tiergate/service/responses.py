"""The Responses API on the chat road: translate to a chat request, run it, shape a Response.

No second generation path: `translate` maps input items, instructions, tools, text.format and
reasoning onto a ChatCompletionRequest, `start_response` admits it through `start_chat` (same tiers,
limits and 400s, with `param` renamed back to the Responses field), and the finished ChatRun becomes
a Response object or the openai SDK's stream events (service/response_shape.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tiergate.auth import Principal
from tiergate.errors import APIError, InvalidRequest, param_from_loc
from tiergate.schemas.chat import ChatCompletionRequest
from tiergate.schemas.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ResponseCreateRequest,
)
from tiergate.service.chat import AnyChatRun, start_chat
from tiergate.service.runtime import Runtime

# GroqCloud's Responses API defaults to the auto tier (chat defaults to on_demand), spec §11 #2.
DEFAULT_TIER = "auto"

# Chat request fields -> the Responses fields they were made from (first prefix that matches).
_FIELD_NAMES = (
    ("response_format.json_schema.", "text.format."),
    ("response_format", "text.format"),
    ("max_completion_tokens", "max_output_tokens"),
    ("max_tokens", "max_output_tokens"),
    ("reasoning_effort", "reasoning.effort"),
    ("reasoning_format", "reasoning"),
    ("include_reasoning", "reasoning"),
    ("tool_choice.function.", "tool_choice."),
)
_MESSAGE = re.compile(r"messages\[(\d+)\](.*)")
_TOOL = re.compile(r"tools\[(\d+)\]\.function(.*)")


@dataclass(frozen=True)
class ChatTranslation:
    """The chat request, and where each of its messages came from (to name fields in a 400)."""

    chat: ChatCompletionRequest
    # origins[i]: the Responses path messages[i] was made from ("instructions", "input", "input[2]").
    origins: tuple[str, ...]

    def rename(self, error: APIError) -> APIError:
        return _rename(error, self.origins)


async def start_response(
    runtime: Runtime, principal: Principal, request: ResponseCreateRequest
) -> AnyChatRun:
    """Translate and admit a Responses request; its 400s name Responses fields, not chat ones."""
    spec = runtime.registry.resolve(request.model)
    translation = translate(request, reasoning_model=spec.reasoning)
    try:
        return await start_chat(runtime, principal, translation.chat)
    except APIError as error:
        translation.rename(error)
        raise


def translate(request: ResponseCreateRequest, *, reasoning_model: bool = False) -> ChatTranslation:
    """The equivalent chat request. A reasoning model's thinking goes to a `reasoning` output item
    (reasoning_format parsed), the way GroqCloud's Responses API returns it."""
    messages: list[dict[str, Any]] = []
    origins: list[str] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
        origins.append("instructions")
    if isinstance(request.input, str):
        items: list[Any] = [MessageItem(role="user", content=request.input)]
        paths = ["input"]
    else:
        items = list(request.input)
        paths = [f"input[{i}]" for i in range(len(items))]
    for item, path in zip(items, paths, strict=True):
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": item.text()})
            origins.append(path)
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if (
                last is not None
                and last["role"] == "assistant"
                and last.get("tool_calls")
                and not last["content"]
            ):
                last["tool_calls"].append(call)  # parallel calls share one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
                origins.append(path)
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
            origins.append(path)
    if not messages:
        raise InvalidRequest("`input` holds nothing to answer.", param="input", code="invalid_value")
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "parallel_tool_calls": request.parallel_tool_calls,
        "service_tier": request.service_tier or DEFAULT_TIER,
        "user": request.user,
        "stream": request.stream,
    }
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
            for tool in request.tools
        ]
    if isinstance(request.tool_choice, str):
        body["tool_choice"] = request.tool_choice
    elif request.tool_choice is not None:
        body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice.name}}
    fmt = request.text.format if request.text else None
    if fmt is not None and fmt.type == "json_schema":
        spec = {"name": fmt.name, "description": fmt.description, "schema": fmt.schema_, "strict": fmt.strict}
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif fmt is not None:
        body["response_format"] = {"type": fmt.type}
    if request.reasoning is not None and request.reasoning.effort is not None:
        body["reasoning_effort"] = request.reasoning.effort
    if reasoning_model:
        body["reasoning_format"] = "parsed"
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except APIError as error:
        _rename(error, origins)
        raise
    except ValidationError as exc:  # the Responses request validated, so this is a gap in the mapping
        first = exc.errors()[0]
        param = param_from_loc(tuple(first["loc"]))
        raise _rename(InvalidRequest(str(first["msg"]), param=param, code="invalid_value"), origins) from None
    return ChatTranslation(chat, tuple(origins))


def responses_param(param: str | None, origins: tuple[str, ...] | list[str]) -> str | None:
    """A chat field path (`messages[1].content`, `max_completion_tokens`) as the Responses request
    spells it (`input[0].content`, `max_output_tokens`); `origins` as in ChatTranslation."""
    if param is None:
        return None
    if param == "messages":
        return "input"
    if match := _MESSAGE.fullmatch(param):
        index, rest = int(match.group(1)), match.group(2)
        origin = origins[index] if index < len(origins) else "input"
        # Only message items keep the chat message's shape below them (`content`).
        keeps_shape = origin.startswith("input") and rest.startswith(".content")
        return origin + rest if keeps_shape else origin
    if match := _TOOL.fullmatch(param):
        return f"tools[{match.group(1)}]{match.group(2)}"
    for chat_name, responses_name in _FIELD_NAMES:
        if param.startswith(chat_name):
            return responses_name + param[len(chat_name) :]
    return param


def _rename(error: APIError, origins: tuple[str, ...] | list[str]) -> APIError:
    """The same error with its `param`, and that field where its message names it, in Responses terms."""
    renamed = responses_param(error.param, origins)
    if error.param is not None and renamed != error.param:
        error.message = error.message.replace(f"`{error.param}`", f"`{renamed}`")
        error.param = renamed
    return error
