"""Log probabilities as OpenAI answers them: chat's ``logprobs.content`` entries, and the
legacy completions' parallel lists."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.inference.openai_objects import JsonObject
from paddler.protocol import TokenLogprob, TopLogprob


def chat_logprobs(entries: Sequence[TokenLogprob]) -> JsonObject:
    """A chat choice's (or chunk's) ``logprobs``: one entry per generated token."""
    return {"content": [_chat_entry(entry) for entry in entries], "refusal": None}


def _chat_entry(entry: TokenLogprob) -> JsonObject:
    return {
        **_token(entry),
        "top_logprobs": [_token(alternative) for alternative in entry.top_logprobs],
    }


def _token(entry: TokenLogprob | TopLogprob) -> JsonObject:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.bytes)}


def completion_logprobs(entries: Sequence[TokenLogprob], text_offset: int = 0) -> JsonObject:
    """A legacy completion choice's ``logprobs``; ``text_offset`` is where the first token
    starts in the answer's text (past the text of earlier chunks, when streaming).

    Each ``top_logprobs`` map holds the most likely alternatives and the chosen token too, as
    OpenAI's does (so up to ``logprobs`` + 1 entries).
    """
    offsets: list[int] = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [_alternatives(entry) for entry in entries],
        "text_offset": offsets,
    }


def _alternatives(entry: TokenLogprob) -> dict[str, float]:
    alternatives = {alternative.token: alternative.logprob for alternative in entry.top_logprobs}
    alternatives.setdefault(entry.token, entry.logprob)
    return alternatives
