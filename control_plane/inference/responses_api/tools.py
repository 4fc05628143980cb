"""``tools`` and ``tool_choice`` of a Responses request: function tools in the flat shape
``{"type": "function", "name", "description", "parameters", "strict"}``, checked by the rules
chat completions use (:mod:`control_plane.inference.tool_requests`)."""

from __future__ import annotations

from typing import Any

from control_plane.inference.tool_requests import check_tools, function_definition, tool_choice
from control_plane.inference.validation import (
    invalid_type,
    required_field,
    unsupported_value,
)
from paddler.protocol import FunctionChoice, FunctionTool, ToolChoice


def read_tools(raw: object) -> tuple[FunctionTool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid_type("tools", "an array of tools", raw)
    tools = tuple(_function(tool, f"tools[{index}]") for index, tool in enumerate(raw))
    check_tools(tools, param="tools", name_param=lambda index: f"tools[{index}].name")
    return tools


def read_tool_choice(raw: object, tools: tuple[FunctionTool, ...]) -> ToolChoice:
    return tool_choice(raw, tools, param="tool_choice")


def _function(raw: object, param: str) -> FunctionTool:
    if not isinstance(raw, dict):
        raise invalid_type(param, "an object (a tool)", raw)
    kind = required_field(raw, "type", param)
    if kind != "function":
        raise unsupported_value(
            f"{param}.type",
            f"tools of type {kind!r} are not supported; only 'function' tools are.",
        )
    return function_definition(raw, param=param, other_keys=("type",))


def tool_object(tool: FunctionTool) -> dict[str, Any]:
    """A tool as a response echoes it."""
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description or None,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def tool_choice_object(choice: ToolChoice) -> str | dict[str, str]:
    if isinstance(choice, FunctionChoice):
        return {"type": "function", "name": choice.name}
    return choice
