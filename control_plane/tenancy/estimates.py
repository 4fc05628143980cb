"""What a request is expected to cost in tokens, before any tokenizer has seen it.

Admission charges this estimate against a key's token limits and budgets; the job's real
usage replaces it when the job ends. Four characters a token is the usual rule of thumb for
English text with the tokenizers of today's models.
"""

from __future__ import annotations

import json

from paddler.protocol import EmbeddingRequest, GenerationRequest, JobRequest

CHARACTERS_PER_TOKEN = 4
# What a request without max_tokens is expected to answer with.
DEFAULT_ANSWER_ALLOWANCE = 256


def estimate_prompt_tokens(request: JobRequest) -> int:
    """The tokens of what a request sends the model: its messages (with their tool calls and
    the tools offered), prompt or inputs, at least one."""
    if isinstance(request, EmbeddingRequest):
        characters = sum(len(text) for text in request.inputs)
    else:
        characters = _generation_characters(request)
    return max(1, -(-characters // CHARACTERS_PER_TOKEN))


def estimated_cost(request: JobRequest) -> int:
    """The tokens a request may use in all: its prompt and the most it may answer with."""
    prompt = estimate_prompt_tokens(request)
    if isinstance(request, EmbeddingRequest):
        return prompt
    max_tokens = request.sampling.max_tokens
    return prompt + (DEFAULT_ANSWER_ALLOWANCE if max_tokens is None else max_tokens)


def _generation_characters(request: GenerationRequest) -> int:
    characters = len(request.prompt)
    for message in request.messages:
        characters += len(message.content) + len(message.name or "")
        characters += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    for tool in request.tools:
        characters += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return characters
