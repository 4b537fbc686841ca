"""Request body of POST /responses (OpenAI Responses API, GroqCloud beta subset, spec §8.13).

Only what GroqCloud documents is accepted. The fields it lists as unsupported are refused with a 400
naming them unless they carry their default (store false, truncation "disabled", empty include).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tiergate.errors import InvalidRequest
from tiergate.schemas.chat import TOOL_NAME_PATTERN

_UNSUPPORTED = ("previous_response_id", "safety_identifier", "prompt_cache_key", "conversation", "prompt")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputText(_Lenient):
    type: Literal["input_text", "output_text", "text"]
    text: str


class MessageItem(_Lenient):
    """An easy message `{role, content}` or a typed `{type: "message", ...}` one."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(_Lenient):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(_Lenient):
    type: Literal["function_call_output"]
    call_id: str
    output: str


class ReasoningItem(_Lenient):
    """Echoed back from an earlier response; the model's own thinking is not replayed."""

    type: Literal["reasoning"]


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


class FunctionTool(_Lenient):
    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunctionChoice(_Lenient):
    type: Literal["function"]
    name: str


class TextFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Lenient):
    format: TextFormat | None = None


class ReasoningConfig(_Lenient):
    effort: Literal["none", "low", "medium", "high"] | None = None
    summary: str | None = None


class ResponseCreateRequest(_Lenient):
    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    service_tier: str | None = None
    store: bool | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    top_p: float | None = Field(default=None, ge=0, le=1)
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    include: list[str] | None = None
    background: bool | None = None

    @model_validator(mode="after")
    def _unsupported_fields(self) -> ResponseCreateRequest:
        extra = self.model_extra or {}
        for name in _UNSUPPORTED:
            if extra.get(name) is not None:
                raise InvalidRequest(f"`{name}` is not supported.", param=name, code="unsupported")
        if self.store:
            raise InvalidRequest(
                "`store` is not supported; only false or null.", param="store", code="unsupported"
            )
        if self.truncation not in (None, "disabled"):
            raise InvalidRequest("`truncation` is not supported.", param="truncation", code="unsupported")
        if self.include:
            raise InvalidRequest("`include` is not supported.", param="include", code="unsupported")
        if self.background:
            raise InvalidRequest("`background` is not supported.", param="background", code="unsupported")
        if self.metadata is not None and len(self.metadata) > 16:
            raise InvalidRequest("`metadata` holds at most 16 pairs.", param="metadata", code="invalid_value")
        fmt = self.text.format if self.text else None
        if fmt is not None and fmt.type == "json_schema" and fmt.name is None:
            raise InvalidRequest("`text.format.name` is required for json_schema.", param="text.format.name")
        return self
