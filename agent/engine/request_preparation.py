"""A generation request made ready to decode: its prompt tokens, token budget and sampler."""

from __future__ import annotations

from dataclasses import dataclass

from agent.chat_format import ToolsError, tool_grammar
from agent.engine.errors import EngineError
from agent.engine.model import Model
from agent.engine.prompt_renderer import PromptRenderer
from agent.engine.sampler import Sampler
from paddler.protocol import CONTEXT_LENGTH_EXCEEDED, GenerationRequest

__all__ = ["PreparedRequest", "prepare", "token_budget"]


@dataclass(frozen=True)
class PreparedRequest:
    prompt: list[int]
    max_tokens: int
    sampler: Sampler
    # tokens whose text (control tokens' too) the output parser must see
    preserved_tokens: frozenset[int] = frozenset()


def prepare(
    request: GenerationRequest, *, model: Model, prompts: PromptRenderer, context_size: int
) -> PreparedRequest:
    """Tokenise ``request``'s prompt, check it fits the context and build its sampler (with
    the grammar its tools put on the output)."""
    try:
        grammar = tool_grammar(request, prompts.format)
    except ToolsError as error:
        raise EngineError(error.code, error.message) from error
    prompt = model.tokenize(prompts.render(request))
    max_tokens = token_budget(len(prompt), request.sampling.max_tokens, context_size)
    sampler = Sampler(
        request.sampling, vocab=model.vocab, n_vocab=model.n_vocab, tool_grammar=grammar
    )
    return PreparedRequest(prompt, max_tokens, sampler, prompts.preserved_tokens)


def token_budget(prompt_tokens: int, requested: int | None, context_size: int) -> int:
    """The tokens a request may generate: ``requested`` if it fits, else all the room left."""
    room = context_size - prompt_tokens
    if requested is None:
        if room < 1:
            raise EngineError(
                CONTEXT_LENGTH_EXCEEDED,
                f"The prompt has {prompt_tokens} tokens, which leaves no room to generate "
                f"any in the context of {context_size} tokens.",
            )
        return room
    if requested > room:
        raise EngineError(
            CONTEXT_LENGTH_EXCEEDED,
            f"The prompt has {prompt_tokens} tokens and max_tokens is {requested}: "
            f"{prompt_tokens + requested} tokens do not fit in the context of "
            f"{context_size} tokens.",
        )
    return requested
