"""Request body of POST /chat/completions, mirroring the API reference and the groq SDK's params.

Nulls are accepted everywhere as "not set" (langchain-groq sends null for optional fields). Fields the
spec calls unsupported are accepted only at their default value: a real value gets a 400 naming it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tiergate.errors import InvalidRequest

TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
SYNC_TIERS = ("auto", "on_demand", "flex", "performance")
# Other spellings clients send for the same tiers (Responses API "default", gateway names).
TIER_ALIASES = {"default": "on_demand", "standard": "on_demand", "priority": "performance"}


class _Lenient(BaseModel):
    """Unknown fields are ignored: newer SDKs and gateways add fields we need not reject."""

    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str
    detail: str | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class FunctionCallSpec(_Lenient):
    name: str
    arguments: str = ""


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallSpec


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCallSpec | None = None
    reasoning: str | None = None

    @model_validator(mode="after")
    def _content_required_by_role(self) -> Message:
        if self.role == "assistant":
            if self.content is None and not self.tool_calls and self.function_call is None:
                raise ValueError("assistant messages need `content`, `tool_calls` or `function_call`")
        elif self.role == "function":
            if self.name is None:
                raise ValueError("function messages need `name`")
        elif self.content is None:
            raise ValueError(f"{self.role} messages need `content`")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need `tool_call_id`")
        return self

    def text(self) -> str:
        """The text of the content; image parts are not understood by text-only models."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class FunctionDefinition(_Lenient):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Lenient):
    type: str = "function"
    function: FunctionDefinition | None = None

    @model_validator(mode="after")
    def _function_tools_need_a_function(self) -> Tool:
        if self.type != "function":
            raise ValueError(f"tool type `{self.type}` is not supported; only `function` tools are")
        if self.function is None:
            raise ValueError("function tools need `function`")
        return self


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedFunction


class JSONSchemaSpec(_Lenient):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    # `schema` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_needs_spec(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("`json_schema` is required when type is `json_schema`")
        return self


class StreamOptions(_Lenient):
    include_usage: bool | None = None


class ChatCompletionRequest(_Lenient):
    messages: list[Message] = Field(min_length=1)
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    functions: list[FunctionDefinition] | None = Field(default=None, max_length=128)
    include_reasoning: bool | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    n: int | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "default", "low", "medium", "high"] | None = None
    reasoning_format: Literal["hidden", "raw", "parsed"] | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    service_tier: str | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    top_p: float | None = Field(default=None, ge=0, le=1)
    user: str | None = None
    disable_tool_validation: bool | None = None
    documents: list[dict[str, Any]] | None = None
    search_settings: dict[str, Any] | None = None
    compound_custom: dict[str, Any] | None = None
    citation_options: str | None = None
    include_domains: list[str] | None = None
    exclude_domains: list[str] | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @model_validator(mode="after")
    def _unsupported_values(self) -> ChatCompletionRequest:
        if self.n is not None and self.n != 1:
            raise InvalidRequest("'n' : number must be at most 1", param="n", code="invalid_value")
        if self.logprobs:
            raise InvalidRequest("`logprobs` is not supported", param="logprobs", code="unsupported")
        if self.logit_bias:
            raise InvalidRequest("`logit_bias` is not supported", param="logit_bias", code="unsupported")
        if self.top_logprobs is not None:
            raise InvalidRequest("`top_logprobs` is not supported", param="top_logprobs", code="unsupported")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "`stream_options` is only allowed when `stream` is true",
                param="stream_options",
                code="invalid_value",
            )
        return self

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [s for s in stops if s]

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def requested_tier(self) -> str:
        """The tier asked for, normalised; null or omitted is on_demand, `batch` is refused."""
        tier = self.service_tier
        if tier is None:
            return "on_demand"
        tier = TIER_ALIASES.get(tier, tier)
        if tier == "batch":
            raise InvalidRequest(
                "service_tier `batch` is not available on synchronous requests; "
                "submit batch work through the Batch API (/openai/v1/batches)",
                param="service_tier",
                code="invalid_value",
            )
        if tier not in SYNC_TIERS:
            raise InvalidRequest(
                f"service_tier must be one of auto, on_demand, flex, performance or null; got `{tier}`",
                param="service_tier",
                code="invalid_value",
            )
        return tier
