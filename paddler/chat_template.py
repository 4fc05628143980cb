"""Render chat messages into a prompt with the model's own (Jinja2) chat template."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.sandbox

from paddler.protocol import ChatMessage

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Roles most templates do not know, and the role they mean.
_ROLE_ALIASES = {"developer": "system"}


class ChatTemplateError(Exception):
    """The template does not compile, or failed to render these messages."""


class MessagesRejected(ChatTemplateError):
    """The template itself refused the conversation (``raise_exception``), e.g. bad roles."""


def _raise_exception(message: str) -> NoReturn:
    raise MessagesRejected(message)


def _strftime_now(format: str) -> str:
    return datetime.datetime.now().strftime(format)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    """A chat template as Hugging Face tokenizers ship it (``tokenizer.chat_template``)."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = _strftime_now
        environment.filters["tojson"] = _tojson
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = environment.from_string(source)
        except jinja2.TemplateError as error:
            raise ChatTemplateError(
                f"line {error.lineno}: {error.message}"
                if isinstance(error, jinja2.TemplateSyntaxError)
                else str(error)
            ) from error

    @classmethod
    def chatml(cls) -> ChatTemplate:
        """The fallback for models that ship no template."""
        return cls(CHATML_TEMPLATE)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt for ``messages``, ending where the assistant's reply begins."""
        conversation = [
            {"role": _ROLE_ALIASES.get(message.role, message.role), "content": message.content}
            for message in messages
        ]
        try:
            return self._template.render(
                messages=conversation,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=None,
            )
        except ChatTemplateError:
            raise
        except Exception as error:  # a template is code: it can fail in any way
            raise ChatTemplateError(f"{type(error).__name__}: {error}") from error
