"""Parse and validate the body of ``POST /v1/responses``.

Its ``input`` is read later (:mod:`.input_items`), once the previous response it may continue
is known: a ``function_call_output`` may answer a call that response made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from control_plane.inference.bodies import json_object, validate_body
from control_plane.inference.input_bounds import reject_lone_surrogates
from control_plane.inference.responses_api.bodies import ResponsesBody, TextFormat
from control_plane.inference.responses_api.sampling import sampling_of
from control_plane.inference.responses_api.tools import read_tool_choice, read_tools
from control_plane.inference.tool_requests import check_answer_format
from control_plane.inference.validation import unsupported_value
from paddler.protocol import FunctionTool, SamplingParams, ToolChoice


@dataclass(frozen=True)
class ResponsesCall:
    """A validated Responses request, and what its response echoes."""

    model: str
    input: object  # a string or input items, read by ``input_items.read_input``
    sampling: SamplingParams
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = "none"
    parallel_tool_calls: bool = True
    instructions: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    text_format: TextFormat | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None


def parse_responses_request(body: bytes | str) -> ResponsesCall:
    data = json_object(body)
    reject_lone_surrogates(data)
    fields = validate_body(ResponsesBody, data)
    if fields.include:
        raise unsupported_value("include", "no additional output data can be included.")
    tools = read_tools(fields.tools)
    choice = read_tool_choice(fields.tool_choice, tools)
    text_format = fields.text.format if fields.text else None
    check_answer_format(
        choice,
        constrained=text_format is not None and text_format.type != "text",
        param="text.format",
    )
    return ResponsesCall(
        model=fields.model,
        input=fields.input,
        sampling=sampling_of(fields),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=fields.parallel_tool_calls is not False,
        instructions=fields.instructions,
        temperature=fields.temperature,
        top_p=fields.top_p,
        max_output_tokens=fields.max_output_tokens,
        text_format=text_format,
        stream=bool(fields.stream),
        store=fields.store is not False,
        previous_response_id=fields.previous_response_id,
        metadata=dict(fields.metadata or {}),
        user=fields.user,
    )
