"""The body of ``POST /v1/responses``, as pydantic models checked without coercion.

A field typed ``object`` is a union (``input``, ``tools``, ``tool_choice``) checked by hand in
the modules that read it, so that its errors name the exact item.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from control_plane.inference.bodies import StrictBody
from control_plane.serving.desired_state import MaxTokens, Temperature, TopP

MAX_METADATA_PAIRS = 16
MetadataKey = Annotated[str, Field(max_length=64)]
MetadataValue = Annotated[str, Field(max_length=512)]


class TextFormat(StrictBody):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, min_length=1, max_length=64)
    schema_: dict[str, object] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(StrictBody):
    format: TextFormat | None = None


class ResponsesBody(StrictBody):
    model: str = Field(min_length=1)
    input: object = None  # a string or an array of items
    instructions: str | None = None
    tools: object = None
    tool_choice: object = None
    parallel_tool_calls: bool | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_output_tokens: MaxTokens | None = None
    text: TextConfig | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        default=None, max_length=MAX_METADATA_PAIRS
    )
    user: str | None = None
    # accepted as OpenAI's clients send them, when they ask for nothing we do not do
    truncation: Literal["disabled"] | None = None
    include: list[str] | None = None
