"""Prefix hashes: what a prompt starts with, computed from its text alone, alike on both sides.

The control plane has no tokenizer, so the prefix an agent's slot holds is named by hashes of
the request's *text*: the agent records them for the request whose KV a slot keeps, the
control plane computes them for a request it is about to dispatch, and equal hashes mean an
equal start. This module is the one definition both sides import.

A chat is a chain over its messages: link ``i`` hashes link ``i - 1`` with message ``i``
(role, name, content, tool calls, tool call id), so a link is equal only if every message up
to it is. The chain starts from a seed naming the request kind and its tools (they are
rendered into the prompt before the first message). A completion is a chain over fixed-size
character blocks of its prompt: link ``k`` covers ``prompt[:k * BLOCK_CHARS]``.

Each link carries how many characters of text it covers, so a match can be weighed by the
prompt it saves rather than by message count. Hashes are 8 bytes of BLAKE2b, in hex.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from paddler.protocol import MAX_SLOT_DIGESTS, ChatMessage, GenerationRequest

__all__ = [
    "BLOCK_CHARS",
    "HEAD_LINKS",
    "MAX_LINKS",
    "PrefixLink",
    "bounded",
    "prefix_chain",
]

BLOCK_CHARS = 256  # a completion prompt's block
MAX_LINKS = MAX_SLOT_DIGESTS  # links an agent reports per slot
HEAD_LINKS = 8  # of which the first ones (a shared system prompt), the rest the deepest


@dataclass(frozen=True)
class PrefixLink:
    """One link of a chain: the hash of the prompt up to some point, and its length."""

    digest: str  # 16 hex characters
    chars: int  # characters of text the prompt has up to here
    depth: int  # messages (chats) or blocks (completions) it covers


def _digest(previous: str, text: str) -> str:
    return hashlib.blake2b(f"{previous}\x1f{text}".encode(), digest_size=8).hexdigest()


def _message_text(message: ChatMessage) -> str:
    calls = [[call.id, call.name, call.arguments] for call in message.tool_calls]
    # the role and content first, then the rest only when it is there: a stable, short form
    parts: list[object] = [message.role, message.content]
    if message.name or calls or message.tool_call_id:
        parts += [message.name or "", calls, message.tool_call_id or ""]
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def _chat_chain(request: GenerationRequest) -> list[PrefixLink]:
    tools = [tool.model_dump(mode="json") for tool in request.tools]
    seed = _digest("chat", json.dumps(tools, sort_keys=True, separators=(",", ":")))
    links: list[PrefixLink] = []
    digest, chars = seed, 0
    for depth, message in enumerate(request.messages, start=1):
        digest = _digest(digest, _message_text(message))
        chars += len(message.content) + sum(len(call.arguments) for call in message.tool_calls)
        links.append(PrefixLink(digest, chars, depth))
    return links


def _completion_chain(prompt: str) -> list[PrefixLink]:
    links: list[PrefixLink] = []
    digest = _digest("completion", "")
    for depth, start in enumerate(range(0, len(prompt) - BLOCK_CHARS + 1, BLOCK_CHARS), 1):
        digest = _digest(digest, prompt[start : start + BLOCK_CHARS])
        links.append(PrefixLink(digest, start + BLOCK_CHARS, depth))
    return links


def prefix_chain(request: GenerationRequest) -> list[PrefixLink]:
    """The whole chain of ``request``, shortest prefix first (empty: nothing to match on)."""
    if request.kind == "chat":
        return _chat_chain(request)
    return _completion_chain(request.prompt)


def bounded(chain: Sequence[PrefixLink]) -> tuple[PrefixLink, ...]:
    """At most ``MAX_LINKS`` of ``chain``: its first ``HEAD_LINKS`` and its deepest others.

    A match is found at any link kept, so a long conversation still matches both a request
    sharing only its system prompt and the next turn of itself.
    """
    if len(chain) <= MAX_LINKS:
        return tuple(chain)
    return (*chain[:HEAD_LINKS], *chain[len(chain) - (MAX_LINKS - HEAD_LINKS) :])
