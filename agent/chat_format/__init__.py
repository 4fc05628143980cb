"""Chat formats: how a model's chat template takes tools, how its output writes tool calls
and thoughts, and the grammars that hold that output to the tools' schemas."""

from agent.chat_format.calls import Piece
from agent.chat_format.detect import TemplateFormat, detect
from agent.chat_format.output import OutputParser
from agent.chat_format.plan import output_parser, request_prompt, tool_grammar
from agent.chat_format.prompt import PromptInputs
from agent.chat_format.tool_grammar import ToolGrammar, ToolsError

__all__ = [
    "OutputParser",
    "Piece",
    "PromptInputs",
    "TemplateFormat",
    "ToolGrammar",
    "ToolsError",
    "detect",
    "output_parser",
    "request_prompt",
    "tool_grammar",
]
