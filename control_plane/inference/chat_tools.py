"""The tools of a chat completion request: ``tools``, ``tool_choice`` and
``parallel_tool_calls``, or their deprecated forms ``functions`` and ``function_call``.

The deprecated forms are converted to tools: ``functions[i]`` becomes a function tool,
``function_call`` the tool choice (``{"name": ...}`` a named function) and the model makes at
most one call. The answer then carries ``message.tool_calls`` like any other, not the
deprecated ``message.function_call``.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.errors import INVALID_VALUE, invalid_request, invalid_value
from control_plane.inference.generation_bodies import ChatCompletionBody
from control_plane.inference.tool_requests import check_tools, function_definition, tool_choice
from control_plane.inference.validation import (
    invalid_type,
    missing_parameter,
    reject_unknown_keys,
    unsupported_value,
)
from paddler.protocol import FunctionTool, ToolChoice


@dataclass(frozen=True)
class RequestedTools:
    tools: tuple[FunctionTool, ...] = ()
    choice: ToolChoice = "none"
    parallel: bool = True


def requested_tools(fields: ChatCompletionBody) -> RequestedTools:
    if fields.functions is not None or fields.function_call is not None:
        return _legacy_functions(fields)
    tools = tuple(
        _tool(tool, f"tools[{index}]") for index, tool in enumerate(_array(fields.tools, "tools"))
    )
    check_tools(tools, param="tools", name_param=lambda index: f"tools[{index}].function.name")
    return RequestedTools(
        tools=tools,
        choice=tool_choice(fields.tool_choice, tools, param="tool_choice"),
        parallel=fields.parallel_tool_calls is not False,
    )


def _tool(raw: object, param: str) -> FunctionTool:
    if not isinstance(raw, dict):
        raise invalid_type(param, "an object", raw)
    reject_unknown_keys(raw, ("type", "function"), param)
    kind = raw.get("type")
    if kind is None:
        raise missing_parameter(f"{param}.type")
    if kind != "function":
        raise unsupported_value(
            f"{param}.type",
            f"tools of type {_quoted(kind)} are not supported; only 'function' tools are.",
        )
    function = raw.get("function")
    if function is None:
        raise missing_parameter(f"{param}.function")
    return _function(function, f"{param}.function")


def _function(raw: object, param: str) -> FunctionTool:
    if not isinstance(raw, dict):
        raise invalid_type(param, "an object", raw)
    return function_definition(raw, param=param)


def _legacy_functions(fields: ChatCompletionBody) -> RequestedTools:
    for modern, legacy in (("tools", "functions"), ("tool_choice", "function_call")):
        if getattr(fields, modern) is not None and getattr(fields, legacy) is not None:
            raise invalid_request(
                f"'{legacy}' is the deprecated form of '{modern}'; send only one of them.",
                param=legacy,
                code=INVALID_VALUE,
            )
    tools = tuple(
        _function(function, f"functions[{index}]")
        for index, function in enumerate(_array(fields.functions, "functions"))
    )
    check_tools(tools, param="functions", name_param=lambda index: f"functions[{index}].name")
    choice = fields.function_call
    if choice == "required":
        raise invalid_value("function_call", "expected 'auto', 'none' or {\"name\": ...}")
    if isinstance(choice, dict):
        # the Responses shape of a named choice, so that errors name 'function_call.name'
        reject_unknown_keys(choice, ("name",), "function_call")
        choice = {"type": "function", "name": choice.get("name")}
    return RequestedTools(
        tools=tools,
        choice=tool_choice(choice, tools, param="function_call"),
        parallel=False,
    )


def _array(raw: object, param: str) -> list[object]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_type(param, "an array", raw)
    return raw


def _quoted(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)
