"""The tools' grammars: llama.cpp accepts every one the formats build; schemas that make no
grammar are the request's error, naming the tool."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from agent.chat_format import TemplateFormat, ToolsError, detect, tool_grammar
from agent.engine.model import Model
from paddler.protocol import (
    ChatMessage,
    FunctionChoice,
    FunctionTool,
    GenerationRequest,
    SamplingParams,
    ToolChoice,
)

WEATHER = FunctionTool(
    name="get_weather",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)
TOOLS = (WEATHER, FunctionTool(name="no-arguments"), FunctionTool(name="any", parameters={}))


@pytest.fixture(scope="module")
def vocab(smollm2_path: Path) -> Iterator[object]:
    model = Model.load(smollm2_path)
    yield model.vocab
    model.close()


def _request(choice: ToolChoice, parallel: bool, **fields: object) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content="?"),),
        tools=fields.pop("tools", TOOLS),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        **fields,
    )


@pytest.mark.parametrize("style", ["hermes", "llama3", "mistral", "generic"])
@pytest.mark.parametrize("choice", ["auto", "required", FunctionChoice(name="get_weather")])
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize(("thinks", "opens"), [(False, False), (True, False), (True, True)])
def test_llama_cpp_accepts_every_tool_grammar(
    vocab: object, style: str, choice: ToolChoice, parallel: bool, thinks: bool, opens: bool
) -> None:
    template = TemplateFormat(style=style, thinks=thinks, opens_thought=opens)  # type: ignore[arg-type]
    grammar = tool_grammar(_request(choice, parallel), template)
    assert grammar is not None
    lazy = choice == "auto" and style != "generic"
    assert bool(grammar.triggers) == lazy
    if lazy:
        patterns = (ctypes.c_char_p * len(grammar.triggers))(
            *(pattern.encode() for pattern in grammar.triggers)
        )
        sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.text.encode(), b"root", patterns, len(grammar.triggers), None, 0
        )
    else:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.text.encode(), b"root")
    assert sampler, grammar.text
    llama_cpp.llama_sampler_free(sampler)


def test_a_named_function_grammar_holds_only_that_function() -> None:
    grammar = tool_grammar(_request(FunctionChoice(name="get_weather"), True), TemplateFormat())
    assert grammar is not None
    assert '"\\"get_weather\\""' in grammar.text
    assert "no-arguments" not in grammar.text


def test_no_grammar_for_none_or_for_auto_with_the_requests_own_grammar() -> None:
    assert tool_grammar(_request("none", True), TemplateFormat()) is None
    own = _request("auto", True, sampling=SamplingParams(grammar='root ::= "x"'))
    assert tool_grammar(own, TemplateFormat(style="hermes")) is None
    forced = _request("required", True, sampling=SamplingParams(grammar='root ::= "x"'))
    assert tool_grammar(forced, TemplateFormat(style="hermes")) is not None


def test_a_schema_that_makes_no_grammar_names_its_tool() -> None:
    bad = FunctionTool(name="bad", parameters={"type": "object", "$ref": "#/nowhere"})
    with pytest.raises(ToolsError) as raised:
        tool_grammar(_request("required", True, tools=(WEATHER, bad)), TemplateFormat())
    assert raised.value.param == "tools[1].function.parameters"
    assert raised.value.code == "invalid_tools"


def test_detects_formats_from_template_sources() -> None:
    assert detect("{{ '<tool_call>' }}{% for t in tools %}{% endfor %}").style == "hermes"
    assert detect("[TOOL_CALLS]").style == "mistral"
    llama = "<|start_header_id|>ipython<|end_header_id|>{{ tools }}"
    assert detect(llama) == TemplateFormat(style="llama3", renders_tools=True)
    thinking = detect("{{ '<think>' }}", generation_prompt="<|im_start|>assistant\n<think>\n")
    assert thinking.thinks and thinking.opens_thought
    assert detect("{{ messages }}") == TemplateFormat()
