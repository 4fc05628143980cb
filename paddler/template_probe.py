"""Try a chat template on sample messages in a child process, off the caller's event loop.

The render's own bounds (see :mod:`paddler.chat_template`) stop the usual runaway templates;
the child process adds what no in-process check can promise: its memory is capped by the
kernel (``RLIMIT_AS``) and it is killed once its time is up, so an admin's template can never
freeze or bloat the process that checks it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
from collections.abc import Sequence

from paddler.chat_template import RENDER_SECONDS, ChatTemplate, ChatTemplateError, RenderTooCostly
from paddler.protocol import ChatMessage

PROBE_MEMORY_BYTES = 1 << 30  # address space of the child (Python itself takes ~100 MB)
PROBE_STARTUP_SECONDS = 10.0  # the child's start-up (imports) on a loaded machine

logger = logging.getLogger("paddler.chat_template")


async def probe_template(
    source: str, messages: Sequence[ChatMessage], *, seconds: float = RENDER_SECONDS
) -> int:
    """The length of the prompt ``source`` renders for ``messages``, rendered in a child.

    Raises :class:`ChatTemplateError` when the template does not compile or render, and
    :class:`RenderTooCostly` when the child ran out of time or memory.
    """
    request = json.dumps(
        {
            "source": source,
            "messages": [message.model_dump() for message in messages],
            "seconds": seconds,
        }
    ).encode()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        answer, _ = await asyncio.wait_for(
            child.communicate(request), seconds + PROBE_STARTUP_SECONDS
        )
    except TimeoutError:
        logger.warning("chat template probe (pid %d) ran out of time: killed", child.pid)
        raise RenderTooCostly(f"the template took longer than {seconds:g}s to render") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    try:
        outcome = json.loads(answer)
    except ValueError:
        logger.warning("chat template probe ended with code %s and no answer", child.returncode)
        raise RenderTooCostly(
            f"rendering the template used more than {PROBE_MEMORY_BYTES >> 20} MiB "
            f"or crashed (exit code {child.returncode})"
        ) from None
    if "error" in outcome:
        error_class = RenderTooCostly if outcome.get("too_costly") else ChatTemplateError
        raise error_class(outcome["error"])
    return int(outcome["prompt_chars"])


def _render_request(request: dict[str, object]) -> dict[str, object]:
    raw_messages = request["messages"]
    assert isinstance(raw_messages, list)
    messages = [ChatMessage.model_validate(message) for message in raw_messages]
    seconds = request["seconds"]
    assert isinstance(seconds, float | int)
    try:
        template = ChatTemplate(str(request["source"]))
        return {"prompt_chars": len(template.render(messages, seconds=float(seconds)))}
    except ChatTemplateError as error:
        return {"error": str(error), "too_costly": isinstance(error, RenderTooCostly)}
    except MemoryError:
        return {"error": "the template ran out of memory", "too_costly": True}


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (PROBE_MEMORY_BYTES, PROBE_MEMORY_BYTES))
    request = json.loads(sys.stdin.buffer.read())
    sys.stdout.write(json.dumps(_render_request(request)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
