"""Render chat messages into a prompt with the model's own (Jinja2) chat template.

A template is code an admin (or a model file) supplies, so every render is bounded: the
sandbox refuses operations whose result would outgrow the render's budget of characters
(``'x' * 10**9``, ``s.center(10**9)``, huge powers), the output stops at that budget, and a
render that runs past :data:`RENDER_SECONDS` is stopped.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Any, NoReturn

import jinja2
import jinja2.compiler
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

from paddler.protocol import ChatMessage
from paddler.template_messages import message_chars, template_message

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

RENDER_SECONDS = 2.0  # wall-clock time one render may take
OUTPUT_ALLOWANCE = 1 << 20  # characters a render may add to its messages' own text
OUTPUT_PER_INPUT_CHAR = 4  # ...plus this many per character of the messages
MAX_INT_BITS = 4096  # the largest integer a template may compute

_TEMPLATE_FILENAME = "<template>"  # the filename Jinja gives code compiled from a string
_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(\d+)(?:\.(\d+))?")


class ChatTemplateError(Exception):
    """The template does not compile, or failed to render these messages."""


class MessagesRejected(ChatTemplateError):
    """The template itself refused the conversation (``raise_exception``), e.g. bad roles."""


class RenderTooCostly(ChatTemplateError):
    """The render went past its time or size bound."""


def _raise_exception(message: str) -> NoReturn:
    raise MessagesRejected(message)


def _strftime_now(format: str) -> str:
    return datetime.datetime.now().strftime(format)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class _Budget(threading.local):
    """The characters the render running on this thread may produce (and hold at once)."""

    chars: int = OUTPUT_ALLOWANCE


_budget = _Budget()


def _too_big(what: str) -> RenderTooCostly:
    return RenderTooCostly(f"{what} would exceed the render's limit of {_budget.chars} characters")


def _check_size(value: object) -> None:
    if isinstance(value, str | list | tuple | dict) and len(value) > _budget.chars:
        raise _too_big(f"a value of {len(value)} items")


def _check_arguments(args: Iterable[object]) -> None:
    """A count or width above the budget (``center(10**9)``, ``batch(10**9)``) is refused."""
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _budget.chars:
            raise _too_big(f"an argument of {value}")


def _bounded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja's pass_context / pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments((*args, *kwargs.values()))
        result = function(*args, **kwargs)
        _check_size(result)
        return result

    return bounded


class _BoundedCodeGenerator(jinja2.compiler.CodeGenerator):
    """Compiles ``a ~ b`` to a join that checks the size of what it made."""

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: jinja2.compiler.Frame) -> None:
        self.write("environment.bounded_concat(")
        super().visit_Concat(node, frame)
        self.write(")")


class _BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    # intercepted operators are also never folded at compile time (``'x' * 10**9``)
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*":
            _check_repetition(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "+":
            _check_sum(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format_widths(left)
        return super().call_binop(context, operator, left, right)

    def call(
        __self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        _check_arguments((*args, *kwargs.values()))
        result = super().call(__context, __obj, *args, **kwargs)
        _check_size(result)
        return result

    def bounded_concat(self, joined: str) -> str:
        _check_size(joined)
        return joined


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_repetition(left: Any, right: Any) -> None:
    for sequence, count in ((left, right), (right, left)):
        sized = isinstance(sequence, str | list | tuple) and _is_int(count)
        if sized and len(sequence) * count > _budget.chars:
            raise _too_big(f"repeating {len(sequence)} items {count} times")
    both_ints = _is_int(left) and _is_int(right)
    if both_ints and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
        raise RenderTooCostly(f"a product larger than {MAX_INT_BITS} bits")


def _check_power(base: Any, exponent: Any) -> None:
    grows = _is_int(base) and _is_int(exponent) and abs(base) > 1 and exponent > 0
    if grows and abs(base).bit_length() * exponent > MAX_INT_BITS:
        raise RenderTooCostly(f"a power larger than {MAX_INT_BITS} bits")


def _check_sum(left: Any, right: Any) -> None:
    sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
    if sized and len(left) + len(right) > _budget.chars:
        raise _too_big("joining two values")


def _check_format_widths(pattern: str) -> None:
    for match in _FORMAT_WIDTH.finditer(pattern):
        for number in match.groups():
            if number is not None and int(number) > _budget.chars:
                raise _too_big(f"a format width of {number}")


class _Deadline:
    """A trace function that stops template code (only it) once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def on_call(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != _TEMPLATE_FILENAME:
            return None
        self._check()
        return self._on_line

    def _on_line(self, frame: FrameType, event: str, arg: object) -> Any:
        self._check()
        return self._on_line

    def _check(self) -> None:
        if time.monotonic() > self._at:
            raise RenderTooCostly(f"the template took longer than {self.seconds:g}s to render")


def _generate_bounded(pieces: Iterable[str], limit: int) -> str:
    output: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > limit:
            raise RenderTooCostly(f"the prompt grew past the render's limit of {limit} characters")
        output.append(piece)
    return "".join(output)


class ChatTemplate:
    """A chat template as Hugging Face tokenizers ship it (``tokenizer.chat_template``)."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        environment = _BoundedSandbox(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        environment.filters = {
            name: _bounded_filter(function) for name, function in environment.filters.items()
        }
        environment.filters["tojson"] = _bounded_filter(_tojson)
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = _strftime_now
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
        except RenderTooCostly:
            raise
        except Exception as error:  # compile-time folding runs template code too
            raise ChatTemplateError(f"{type(error).__name__}: {error}") from error

    @classmethod
    def chatml(cls) -> ChatTemplate:
        """The fallback for models that ship no template."""
        return cls(CHATML_TEMPLATE)

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, object]] | None = None,
        seconds: float = RENDER_SECONDS,
    ) -> str:
        """The prompt for ``messages``, ending where the assistant's reply begins.

        ``tools`` (OpenAI-shaped function definitions) go to the template's ``tools``.
        Raises :class:`RenderTooCostly` past ``seconds`` or past the character budget (a fixed
        allowance plus a multiple of the input's length: messages, calls and tools).
        """
        conversation = [template_message(message) for message in messages]
        input_chars = sum(message_chars(message) for message in messages)
        if tools:
            input_chars += len(json.dumps(list(tools), ensure_ascii=False))
        limit = OUTPUT_ALLOWANCE + OUTPUT_PER_INPUT_CHAR * input_chars
        previous_limit, _budget.chars = _budget.chars, limit
        previous_trace = sys.gettrace()
        sys.settrace(_Deadline(seconds).on_call)
        try:
            pieces = self._template.generate(
                messages=conversation,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=list(tools) if tools else None,
            )
            return _generate_bounded(pieces, limit)
        except ChatTemplateError:
            raise
        except MemoryError as error:
            raise RenderTooCostly("the template ran out of memory") from error
        except Exception as error:  # a template is code: it can fail in any way
            raise ChatTemplateError(f"{type(error).__name__}: {error}") from error
        finally:
            sys.settrace(previous_trace)
            _budget.chars = previous_limit
