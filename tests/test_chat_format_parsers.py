"""Output parsers per format, on stored model outputs (tests/fixtures/chat_format/): fed whole
and in one-character pieces, the pieces join to the same text, thoughts and calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.chat_format import Piece, TemplateFormat, output_parser
from agent.chat_format.json_scan import StringDecoder
from agent.chat_format.reasoning import ThoughtSplitter
from paddler.protocol import ChatMessage, FunctionChoice, FunctionTool, GenerationRequest

FIXTURES = Path(__file__).parent / "fixtures" / "chat_format"
TOOLS = (FunctionTool(name="get_weather"), FunctionTool(name="get_time"))


def _cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        fixture = json.loads(path.read_text())
        for number, case in enumerate(fixture["cases"]):
            cases.append(pytest.param(fixture["style"], case, id=f"{path.stem}-{number}"))
    return cases


def _request(case: dict[str, Any]) -> GenerationRequest:
    choice = case["tool_choice"]
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content="?"),),
        tools=TOOLS,
        tool_choice=choice if choice in ("auto", "required") else FunctionChoice(name=choice),
        parallel_tool_calls=case["parallel"],
    )


def _parse(style: str, case: dict[str, Any], pieces: list[str]) -> tuple[list[Piece], int]:
    template = TemplateFormat(
        style=style,  # type: ignore[arg-type]
        thinks=case.get("thinks", False),
        opens_thought=case.get("opens_thought", False),
    )
    parser = output_parser(_request(case), template)
    out = [parser.feed(piece) for piece in pieces]
    out.append(parser.finish())
    return out, parser.calls


def _joined(out: list[Piece]) -> dict[str, Any]:
    calls: dict[int, dict[str, str]] = {}
    for piece in out:
        for delta in piece.tool_calls:
            call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.id is not None:
                assert delta.name and delta.id.startswith("call_") and len(delta.id) == 29
                call["name"] = delta.name
            call["arguments"] += delta.arguments
    return {
        "content": "".join(piece.text for piece in out),
        "reasoning": "".join(piece.reasoning for piece in out),
        "calls": [calls[index] for index in sorted(calls)],
    }


@pytest.mark.parametrize(("style", "case"), _cases())
def test_fixture_output_parses_the_same_whole_and_in_pieces(
    style: str, case: dict[str, Any]
) -> None:
    expected = {key: case[key] for key in ("content", "reasoning", "calls")}
    whole, calls = _parse(style, case, [case["output"]])
    assert _joined(whole) == expected
    assert calls == len(expected["calls"])
    by_char, _ = _parse(style, case, list(case["output"]))
    assert _joined(by_char) == expected


def test_arguments_stream_in_pieces_once_the_name_is_known() -> None:
    output = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    case = {"tool_choice": "auto", "parallel": True}
    out, _ = _parse("hermes", case, list(output))
    deltas = [delta for piece in out for delta in piece.tool_calls]
    assert deltas[0].name == "get_weather" and deltas[0].arguments == ""
    assert len(deltas) > 10, "arguments came in one piece"
    assert all(delta.id is None and delta.name is None for delta in deltas[1:])


def test_only_a_possible_marker_is_held_back() -> None:
    case = {"tool_choice": "auto", "parallel": True}
    template = TemplateFormat(style="hermes")
    parser = output_parser(_request(case), template)
    assert parser.feed("Hello <tool_c").text == "Hello "
    assert parser.feed("ar> x").text == "<tool_car> x"


def test_generic_answer_streams_its_decoded_string() -> None:
    case = {"tool_choice": "auto", "parallel": True}
    output = '{\n  "response": "Hi \\"there\\"\\n\\u00e9\\ud83d\\ude00"\n}'
    out, calls = _parse("generic", case, list(output))
    assert _joined(out)["content"] == 'Hi "there"\né\U0001f600'
    assert calls == 0
    assert sum(1 for piece in out if piece.text) > 5, "the answer did not stream"


def test_one_call_at_most_without_parallel_calls() -> None:
    case = {"tool_choice": "auto", "parallel": False}
    block = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    out, calls = _parse("hermes", case, [block + block])
    assert calls == 1
    assert _joined(out)["content"] == block


def test_thoughts_split_only_at_the_start() -> None:
    splitter = ThoughtSplitter()
    assert splitter.feed("Answer <think>not a thought</think>") == (
        "",
        "Answer <think>not a thought</think>",
    )


def test_string_decoder_stops_at_the_closing_quote() -> None:
    decoder = StringDecoder()
    assert decoder.feed('a\\tb" rest') == ("a\tb", 5)
    assert decoder.ended
