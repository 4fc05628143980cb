"""The bodies and chunks of ``POST /v1/completions`` (the legacy text completions) answers."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.logprob_objects import completion_logprobs
from control_plane.inference.openai_objects import (
    Header,
    JsonObject,
    openai_finish_reason,
    usage_object,
)
from paddler.protocol import Done, FinishReason, Token, TokenLogprob

OBJECT = "text_completion"


def text_completion(
    header: Header, output: GeneratedOutput, done: Done, *, logprobs: bool = False
) -> JsonObject:
    """The body of a non-streaming answer."""
    return {
        **header.fields(OBJECT),
        "choices": [
            _choice(output.text, done.finish_reason, output.logprobs if logprobs else None)
        ],
        "usage": usage_object(done.usage),
    }


class TextStream:
    """The chunks of one streamed completion; logprobs' text offsets count from the first."""

    def __init__(self, header: Header, *, logprobs: bool, include_usage: bool) -> None:
        self.header = header
        self.logprobs = logprobs
        self.include_usage = include_usage
        self._offset = 0

    def opening(self) -> list[JsonObject]:
        return []

    def piece(self, token: Token) -> list[JsonObject]:
        if not token.text and not (self.logprobs and token.logprobs):
            return []
        chunk = text_chunk(
            self.header,
            token.text,
            logprobs=token.logprobs if self.logprobs else None,
            text_offset=self._offset,
        )
        self._offset += len(token.text)
        return [chunk]

    def ending(self, done: Done) -> list[JsonObject]:
        chunks = [text_chunk(self.header, "", finish_reason=done.finish_reason)]
        if self.include_usage:
            chunks.append(text_usage_chunk(self.header, done))
        return chunks


def text_chunk(
    header: Header,
    text: str,
    *,
    logprobs: Sequence[TokenLogprob] | None = None,
    text_offset: int = 0,
    finish_reason: FinishReason | None = None,
) -> JsonObject:
    """One streamed chunk; the last one carries ``finish_reason``."""
    return {
        **header.fields(OBJECT),
        "choices": [_choice(text, finish_reason, logprobs, text_offset)],
    }


def text_usage_chunk(header: Header, done: Done) -> JsonObject:
    """The extra chunk sent before ``[DONE]`` when ``stream_options.include_usage`` is set."""
    return {**header.fields(OBJECT), "choices": [], "usage": usage_object(done.usage)}


def _choice(
    text: str,
    finish_reason: FinishReason | None,
    logprobs: Sequence[TokenLogprob] | None,
    text_offset: int = 0,
) -> JsonObject:
    return {
        "text": text,
        "index": 0,
        "logprobs": None if logprobs is None else completion_logprobs(logprobs, text_offset),
        "finish_reason": openai_finish_reason(finish_reason),
    }
