"""The tools a request offers and how it lets the model use them, checked once for every
endpoint (chat completions and the Responses API shape them differently; the rules are one)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from control_plane.errors import invalid_value
from control_plane.inference.input_bounds import check_json_schema
from control_plane.inference.validation import (
    invalid_type,
    missing_parameter,
    reject_unknown_keys,
    too_many,
)
from paddler.protocol import ChatMessage, FunctionChoice, FunctionTool, ToolChoice

MAX_TOOLS = 128
_NAMED_CHOICES: dict[str, ToolChoice] = {"auto": "auto", "none": "none", "required": "required"}
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_DEFINITION_KEYS = ("name", "description", "parameters", "strict")


def function_tool(
    name: object, description: object, parameters: object, strict: object, *, param: str
) -> FunctionTool:
    """One function definition; ``param`` names the object that holds these fields (e.g.
    ``tools[0].function``), and errors name the field inside it."""
    if name is None:
        raise missing_parameter(f"{param}.name")
    if not isinstance(name, str):
        raise invalid_type(f"{param}.name", "a string", name)
    if not _FUNCTION_NAME.fullmatch(name):
        raise invalid_value(
            f"{param}.name",
            "a function name is 1 to 64 letters, digits, underscores or dashes",
        )
    if description is not None and not isinstance(description, str):
        raise invalid_type(f"{param}.description", "a string", description)
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise invalid_type(f"{param}.parameters", "an object (a JSON schema)", parameters)
    check_json_schema(parameters, f"{param}.parameters")
    if strict is not None and not isinstance(strict, bool):
        raise invalid_type(f"{param}.strict", "a boolean", strict)
    return FunctionTool(
        name=name, description=description or "", parameters=parameters, strict=bool(strict)
    )


def function_definition(
    raw: Mapping[str, object], *, param: str, other_keys: tuple[str, ...] = ()
) -> FunctionTool:
    """The function defined by ``raw``'s ``name``, ``description``, ``parameters`` and
    ``strict``; a key that is none of these nor of ``other_keys`` is an unknown parameter."""
    reject_unknown_keys(raw, (*_DEFINITION_KEYS, *other_keys), param)
    return function_tool(
        raw.get("name"),
        raw.get("description"),
        raw.get("parameters"),
        raw.get("strict"),
        param=param,
    )


def check_tools(
    tools: Sequence[FunctionTool], *, param: str, name_param: Callable[[int], str]
) -> None:
    """At most :data:`MAX_TOOLS`, no name given twice (``name_param(i)`` names tool i's name)."""
    if len(tools) > MAX_TOOLS:
        raise too_many(param, MAX_TOOLS, len(tools), "tools")
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.name in seen:
            raise invalid_value(name_param(index), f"the function '{tool.name}' is given twice")
        seen.add(tool.name)


def tool_choice(raw: object, tools: Sequence[FunctionTool], *, param: str) -> ToolChoice:
    """``"auto"``, ``"none"``, ``"required"``, or a named function in either shape:
    ``{"type": "function", "function": {"name": ...}}`` (chat completions) or
    ``{"type": "function", "name": ...}`` (Responses). Absent: ``auto`` when tools are given."""
    if raw is None:
        return "auto" if tools else "none"
    if isinstance(raw, str):
        choice = _NAMED_CHOICES.get(raw)
        if choice is None:
            raise invalid_value(param, "expected 'auto', 'none', 'required' or a named function")
        if choice != "none" and not tools:
            raise invalid_value(param, f"'{raw}' is only allowed when 'tools' are given")
        return choice
    if not isinstance(raw, dict):
        raise invalid_type(param, "a string or an object", raw)
    if raw.get("type") != "function":
        raise invalid_value(f"{param}.type", "only 'function' choices are supported")
    function = raw.get("function")
    name_param = f"{param}.function.name" if isinstance(function, dict) else f"{param}.name"
    name = function.get("name") if isinstance(function, dict) else raw.get("name")
    if name is None:
        raise missing_parameter(name_param)
    if not isinstance(name, str):
        raise invalid_type(name_param, "a string", name)
    if name not in {tool.name for tool in tools}:
        raise invalid_value(name_param, f"no function named '{name}' is among the given tools")
    return FunctionChoice(name=name)


def check_conversation(messages: Sequence[ChatMessage], *, param_of: Callable[[int], str]) -> None:
    """Every ``tool`` message answers a call an earlier assistant message made;
    ``param_of(i)`` names message i (``messages[i]``, ``input[i]``)."""
    calls: set[str] = set()
    for index, message in enumerate(messages):
        calls.update(call.id for call in message.tool_calls)
        if message.role != "tool":
            continue
        if not message.tool_call_id:
            raise missing_parameter(f"{param_of(index)}.tool_call_id")
        if message.tool_call_id not in calls:
            raise invalid_value(
                f"{param_of(index)}.tool_call_id",
                f"no earlier assistant message made a tool call with id '{message.tool_call_id}'",
            )


def check_answer_format(choice: ToolChoice, *, constrained: bool, param: str) -> None:
    """A JSON answer format (``param``) together with tools the model may or may not call is
    refused rather than one of them silently dropped: the agent constrains either the calls
    or the answer, not a choice between both."""
    if constrained and choice == "auto":
        raise invalid_value(
            param,
            "a JSON answer format cannot be combined with tools the model may or may not "
            "call; set tool_choice to 'required', a named function, or 'none'",
        )
