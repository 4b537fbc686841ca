"""A finished or running chat run as the Responses API shows it: the Response object, its output items
(reasoning, message, function calls) and the openai SDK's stream events, in order and numbered.

service/responses.py turns the Responses request into a chat run; this module only shapes what that
run produced, so the two change for different reasons.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tiergate import ids
from tiergate.schemas.responses import ResponseCreateRequest
from tiergate.service.chat import AnyChatRun

# The tier that ran, in the Responses API's own vocabulary (the openai SDK types it as a Literal).
RESPONSES_TIER = {"on_demand": "default", "flex": "flex", "performance": "priority", "batch": "default"}


class ResponseShape:
    """Builds the Response object and its stream events for one run (ids fixed up front)."""

    def __init__(self, request: ResponseCreateRequest, run: AnyChatRun) -> None:
        self.request = request
        self.run = run
        self.id = ids.response_id()
        self.message_id = ids.message_id()
        self.reasoning_id = ids.short_id("rs")
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
        text = reader.message_content()
        return self.items(reader.message_reasoning(), text if text or not reader.tool_calls else None)

    def items(self, reasoning: str | None, text: str | None) -> list[dict[str, Any]]:
        """The output list in its one order; `text` None: no message item."""
        items: list[dict[str, Any]] = []
        if reasoning:
            items.append(self.reasoning_item(reasoning, "completed"))
        if text is not None:
            items.append(self.message_item(text, "completed"))
        for call in self.run.output.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "id": "fc_" + call.id.removeprefix("call_"),
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                    "status": "completed",
                }
            )
        return items

    def reasoning_item(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [{"type": "reasoning_text", "text": text}]
        return {
            "type": "reasoning",
            "id": self.reasoning_id,
            "summary": [],
            "content": content,
            "status": status,
        }

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
        """The event sequence the openai SDK expects, text as the model writes it.

        Items get their output_index in the order they open: reasoning (the model thinks first),
        the message, then each function call. The final `output` is built from what was streamed,
        so it lists the same items at the same indices.
        """
        yield self.event("response.created", response=self.body("in_progress"))
        yield self.event("response.in_progress", response=self.body("in_progress"))
        reasoning: _Part | None = None
        message: _Part | None = None
        async for piece in self.run.events():
            if piece.reasoning and message is None:
                if reasoning is None and piece.reasoning.strip():
                    reasoning = _Part(self.reasoning_id, 0)
                    yield self.event(
                        "response.output_item.added",
                        output_index=0,
                        item=self.reasoning_item(None, "in_progress"),
                    )
                    part = {"type": "reasoning_text", "text": ""}
                    yield self.event("response.content_part.added", **reasoning.where, part=part)
                if reasoning is not None:
                    delta = reasoning.add(piece.reasoning)
                    if delta:
                        yield self.event("response.reasoning_text.delta", **reasoning.where, delta=delta)
            if piece.content:
                if message is None:
                    if reasoning is not None:
                        for event in self._close_reasoning(reasoning):
                            yield event
                    message = _Part(self.message_id, 0 if reasoning is None else 1)
                    yield self.event(
                        "response.output_item.added",
                        output_index=message.index,
                        item=self.message_item(None, "in_progress"),
                    )
                    yield self.event("response.content_part.added", **message.where, part=self.text_part(""))
                message.text.append(piece.content)
                yield self.event(
                    "response.output_text.delta", **message.where, delta=piece.content, logprobs=[]
                )
        if reasoning is not None and message is None:
            for event in self._close_reasoning(reasoning):
                yield event
        if message is not None:
            full = message.full()
            yield self.event("response.output_text.done", **message.where, text=full, logprobs=[])
            yield self.event("response.content_part.done", **message.where, part=self.text_part(full))
            done = self.message_item(full, "completed")
            yield self.event("response.output_item.done", output_index=message.index, item=done)
        # A message item is listed when text was streamed, or when there is nothing else to list.
        text = message.full() if message is not None else None
        if text is None and not self.run.output.tool_calls:
            text = ""
        output = self.items(reasoning.full().strip() if reasoning else None, text)
        streamed = (reasoning is not None) + (message is not None)
        for index, out in enumerate(output[streamed:], start=streamed):
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
        final = self.body("completed", output)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield self.event(kind, response=final)

    def _close_reasoning(self, reasoning: _Part) -> list[dict[str, Any]]:
        text = reasoning.full().strip()
        part = {"type": "reasoning_text", "text": text}
        return [
            self.event("response.reasoning_text.done", **reasoning.where, text=text),
            self.event("response.content_part.done", **reasoning.where, part=part),
            self.event(
                "response.output_item.done",
                output_index=reasoning.index,
                item=self.reasoning_item(text, "completed"),
            ),
        ]


@dataclass
class _Part:
    """One streamed output item's text so far."""

    item_id: str
    index: int
    text: list[str] = field(default_factory=list)
    _started: bool = False  # some text other than leading whitespace was added

    @property
    def where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": self.index, "content_index": 0}

    def add(self, delta: str) -> str:
        """Record a delta; the text's leading whitespace is dropped (the finished item is stripped)."""
        if not self._started:
            delta = delta.lstrip()
            self._started = bool(delta)
        self.text.append(delta)
        return delta

    def full(self) -> str:
        return "".join(self.text)


def _tool_choice(request: ResponseCreateRequest) -> Any:
    choice = request.tool_choice
    if choice is None:
        return "auto" if request.tools else "none"
    return choice if isinstance(choice, str) else choice.model_dump()
