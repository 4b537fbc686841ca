"""The Responses API on the chat road: translate to a chat request, run it, shape a Response.

No second generation path: `to_chat_request` maps input items, instructions, tools, text.format and
reasoning onto a ChatCompletionRequest, `start_chat` admits it (same tiers, limits and 400s), and the
finished ChatRun becomes a Response object (or the openai SDK's stream events).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from tiergate import ids
from tiergate.schemas.chat import ChatCompletionRequest
from tiergate.schemas.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ResponseCreateRequest,
)
from tiergate.service.chat import AnyChatRun

# GroqCloud's Responses API defaults to the auto tier (chat defaults to on_demand), spec §11 #2.
DEFAULT_TIER = "auto"
# The tier that ran, in the Responses API's own vocabulary (the openai SDK types it as a Literal).
RESPONSES_TIER = {"on_demand": "default", "flex": "flex", "performance": "priority", "batch": "default"}


def to_chat_request(request: ResponseCreateRequest) -> ChatCompletionRequest:
    """The equivalent chat request; validation errors keep the Responses field names in `param`."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    items = (
        [MessageItem(role="user", content=request.input)] if isinstance(request.input, str) else request.input
    )
    for item in items:
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": item.text()})
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
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
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
    return ChatCompletionRequest.model_validate(body)


class ResponseShape:
    """Builds the Response object and its stream events for one run (ids fixed up front)."""

    def __init__(self, request: ResponseCreateRequest, run: AnyChatRun) -> None:
        self.request = request
        self.run = run
        self.id = ids.response_id()
        self.message_id = ids.message_id()
        self.created_at = int(time.time())
        self.sequence = 0

    def body(self, status: str, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        request, run = self.request, self.run
        finished = status != "in_progress"
        incomplete = finished and run.finish_reason == "length"
        fmt = (
            request.text.format.model_dump(by_alias=True, exclude_none=True)
            if request.text and request.text.format
            else {"type": "text"}
        )
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if incomplete else status,
            "model": run.model,
            "output": output or [],
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": None,
            "metadata": request.metadata or {},
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": None,
            "reasoning": {"effort": request.reasoning.effort if request.reasoning else None, "summary": None},
            "service_tier": RESPONSES_TIER.get(run.tier, "default"),
            "store": False,
            "background": False,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "text": {"format": fmt},
            "tool_choice": _tool_choice(request),
            "tools": [tool.model_dump(exclude_none=True) for tool in request.tools or []],
            "top_logprobs": 0,
            "truncation": "disabled",
            "user": request.user,
            "usage": self.usage() if finished else None,
        }

    def usage(self) -> dict[str, Any]:
        usage = self.run.usage
        return {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }

    def output(self) -> list[dict[str, Any]]:
        """Output items: reasoning (when parsed), the message (when there is text), then function calls."""
        reader = self.run.output
        items: list[dict[str, Any]] = []
        reasoning = reader.message_reasoning()
        if reasoning:
            items.append(
                {
                    "type": "reasoning",
                    "id": ids.short_id("rs"),
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": reasoning}],
                }
            )
        text = reader.message_content()
        if text or not reader.tool_calls:
            items.append(self.message_item(text or "", "completed"))
        for call in reader.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "id": ids.short_id("fc"),
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                    "status": "completed",
                }
            )
        return items

    def message_item(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [self.text_part(text)]
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    @staticmethod
    def text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **fields}

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """The event sequence the openai SDK expects, text deltas as the model writes them."""
        yield self.event("response.created", response=self.body("in_progress"))
        yield self.event("response.in_progress", response=self.body("in_progress"))
        item = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        opened = False
        text: list[str] = []
        async for piece in self.run.events():
            if not piece.content:
                continue
            if not opened:
                opened = True
                yield self.event(
                    "response.output_item.added", output_index=0, item=self.message_item(None, "in_progress")
                )
                yield self.event("response.content_part.added", **item, part=self.text_part(""))
            text.append(piece.content)
            yield self.event("response.output_text.delta", **item, delta=piece.content, logprobs=[])
        output = self.output()
        if opened:
            full = "".join(text)
            yield self.event("response.output_text.done", **item, text=full, logprobs=[])
            yield self.event("response.content_part.done", **item, part=self.text_part(full))
            done = next(i for i in output if i["type"] == "message")
            yield self.event("response.output_item.done", output_index=0, item=done)
        index = 1 if opened else 0
        for out in output:
            if out["type"] == "message" and opened:
                continue
            yield self.event(
                "response.output_item.added", output_index=index, item={**out, "status": "in_progress"}
            )
            if out["type"] == "function_call":
                yield self.event(
                    "response.function_call_arguments.done",
                    item_id=out["id"],
                    output_index=index,
                    arguments=out["arguments"],
                    name=out["name"],
                )
            yield self.event("response.output_item.done", output_index=index, item=out)
            index += 1
        final = self.body("completed", output)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield self.event(kind, response=final)


def _tool_choice(request: ResponseCreateRequest) -> Any:
    choice = request.tool_choice
    if choice is None:
        return "auto" if request.tools else "none"
    return choice if isinstance(choice, str) else choice.model_dump()
