"""Tool calls and thoughts through the agent's jobs, on SmolLM2: its own template (the generic
format) and a Hermes-style override; the job's Token frames carry parsed calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from agent.engine.engine import Engine
from agent.jobs import Jobs
from agent.served_model import ServedModel
from paddler import protocol
from paddler.protocol import (
    ChatMessage,
    FunctionChoice,
    FunctionTool,
    GenerationRequest,
    SamplingParams,
    ToolCall,
    ToolChoice,
)

WEATHER = FunctionTool(
    name="get_weather",
    description="Get the current weather in a city",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)
TIME = FunctionTool(
    name="get_time",
    description="Get the local time in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
QUESTION = (ChatMessage(role="user", content="What is the weather in Paris?"),)

# a Hermes/Qwen-style template (written for these tests): tools in the system turn, calls in
# <tool_call> tags with tojson arguments, results in <tool_response> user turns
HERMES_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou may call functions:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n"
    'Write each call as <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call><|im_end|>\n'
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}"
    "\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "{% for call in message.tool_calls or [] %}<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}'
    "\n</tool_call>{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
THINKING_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{% endfor %}<|im_start|>assistant\n<think>\n"
)


class _Host:
    state: protocol.AgentState = "ready"

    def set_state(self, state: protocol.AgentState, issues: tuple[str, ...] = ()) -> None:
        self.state = state

    def report_status(self) -> None:
        pass

    async def jobs_finished(self) -> None:
        pass


TEMPLATES = {"generic": None, "hermes": HERMES_TEMPLATE}


@contextlib.asynccontextmanager
async def serving(path: Path, template: str | None) -> AsyncIterator[Jobs]:
    engine = Engine(path, slots=1, context_size=2048, threads=2, chat_template=template)
    await engine.load()
    try:
        yield Jobs(ServedModel(engine, _Host()))
    finally:
        engine.close()


async def run(jobs: Jobs, request: GenerationRequest) -> list[protocol.Message]:
    outbox: asyncio.Queue[protocol.Message] = asyncio.Queue()
    jobs.start(protocol.Job(job_id="j1", request_id="r1", request=request), outbox)
    await jobs.finished()
    return [outbox.get_nowait() for _ in range(outbox.qsize())]


def calls_of(frames: list[protocol.Message]) -> list[ToolCall]:
    found: dict[int, dict[str, str]] = {}
    for frame in frames:
        if isinstance(frame, protocol.Token):
            for delta in frame.tool_calls:
                call = found.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id is not None:
                    call.update(id=delta.id, name=delta.name or "")
                call["arguments"] += delta.arguments
    return [ToolCall(**found[index]) for index in sorted(found)]


def tool_request(choice: ToolChoice, **fields: object) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=fields.pop("messages", QUESTION),
        tools=(WEATHER, TIME),
        tool_choice=choice,
        sampling=SamplingParams(temperature=0, max_tokens=fields.pop("max_tokens", 40)),
        **fields,
    )


def done_of(frames: list[protocol.Message]) -> protocol.Done:
    assert isinstance(frames[-1], protocol.Done), frames[-1]
    return frames[-1]


def assert_valid(call: ToolCall) -> None:
    schema = {"get_weather": WEATHER, "get_time": TIME}[call.name].parameters
    jsonschema.validate(json.loads(call.arguments), schema)


@pytest.mark.parametrize("template", ["generic", "hermes"])
@pytest.mark.parametrize("choice", ["required", FunctionChoice(name="get_time")])
async def test_a_required_call_is_parsed_and_valid(
    template: str, choice: ToolChoice, smollm2_path: Path
) -> None:
    async with serving(smollm2_path, TEMPLATES[template]) as jobs:
        frames = await run(jobs, tool_request(choice, parallel_tool_calls=False))
    calls = calls_of(frames)
    assert len(calls) == 1
    assert_valid(calls[0])
    if isinstance(choice, FunctionChoice):
        assert calls[0].name == "get_time"
    assert done_of(frames).finish_reason == "tool_calls"
    assert not any(isinstance(f, protocol.Token) and f.text.strip() for f in frames)


@pytest.mark.parametrize("template", ["generic", "hermes"])
async def test_auto_answers_or_calls(template: str, smollm2_path: Path) -> None:
    async with serving(smollm2_path, TEMPLATES[template]) as jobs:
        frames = await run(jobs, tool_request("auto"))
    calls = calls_of(frames)
    text = "".join(f.text for f in frames if isinstance(f, protocol.Token))
    assert calls or text
    for call in calls:
        if done_of(frames).finish_reason == "tool_calls":
            assert_valid(call)


@pytest.mark.parametrize("template", ["generic", "hermes"])
async def test_a_tool_result_is_rendered_and_answered(template: str, smollm2_path: Path) -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    conversation = (
        *QUESTION,
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(role="tool", tool_call_id="call_1", content='{"temperature": 21}'),
    )
    async with serving(smollm2_path, TEMPLATES[template]) as jobs:
        frames = await run(jobs, tool_request("none", messages=conversation, max_tokens=8))
    done = done_of(frames)
    assert done.usage.prompt_tokens > 60
    assert "".join(f.text for f in frames if isinstance(f, protocol.Token))
    assert done.finish_reason in ("stop", "length")


async def test_thoughts_are_split_and_counted(smollm2_path: Path) -> None:
    async with serving(smollm2_path, THINKING_TEMPLATE) as jobs:
        grammar = 'root ::= "Let me see." "</think>" "\\n\\nIt is sunny."'
        request = GenerationRequest(
            kind="chat",
            messages=QUESTION,
            sampling=SamplingParams(temperature=0, max_tokens=30, grammar=grammar),
        )
        frames = await run(jobs, request)
        tokens = [f for f in frames if isinstance(f, protocol.Token)]
        assert "".join(f.reasoning for f in tokens) == "Let me see."
        assert "".join(f.text for f in tokens) == "It is sunny."
        done = done_of(frames)
        assert 0 < done.usage.reasoning_tokens < done.usage.completion_tokens

        inline = request.model_copy(update={"reasoning_format": "none"})
        frames = await run(jobs, inline)
        text = "".join(f.text for f in frames if isinstance(f, protocol.Token))
        assert text == "Let me see.</think>\n\nIt is sunny."
        assert done_of(frames).usage.reasoning_tokens == 0


async def test_a_bad_schema_is_a_job_error_naming_the_tool(smollm2_path: Path) -> None:
    bad = FunctionTool(name="bad", parameters={"$ref": "#/nowhere"})
    request = tool_request("required").model_copy(update={"tools": (WEATHER, bad)})
    async with serving(smollm2_path, None) as jobs:
        frames = await run(jobs, request)
    assert isinstance(frames[-1], protocol.JobError)
    assert frames[-1].code == protocol.INVALID_TOOLS
    assert "tools[1].function.parameters" in frames[-1].message
