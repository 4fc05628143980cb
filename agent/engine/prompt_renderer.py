"""A request's prompt as text: completions as given, chats through the model's chat template."""

from __future__ import annotations

import logging

from agent.chat_format import TemplateFormat, detect, request_prompt
from agent.engine.errors import EngineError
from agent.engine.model import Model
from paddler.chat_template import ChatTemplate, ChatTemplateError, MessagesRejected
from paddler.protocol import INVALID_MESSAGES, ChatMessage, GenerationRequest

__all__ = ["PromptRenderer"]

logger = logging.getLogger("paddler.agent.engine")


# markers that some vocabularies have as control tokens, whose text must reach the parser
_MARKERS = ("<|python_tag|>", "[TOOL_CALLS]", "<tool_call>", "</tool_call>", "<think>", "</think>")
_PROBE = (ChatMessage(role="user", content="Hi"),)


class PromptRenderer:
    """Renders prompts with one chat template; ``issues`` tells the operator what went wrong.

    ``format`` is what the template says about tools and thoughts (see ``agent.chat_format``);
    ``preserved_tokens`` are the ids of the format's markers that are single tokens.
    """

    def __init__(
        self,
        template: ChatTemplate,
        issues: tuple[str, ...] = (),
        *,
        preserved_tokens: frozenset[int] = frozenset(),
    ) -> None:
        self.template = template
        self.issues = issues
        self.preserved_tokens = preserved_tokens
        try:
            sample = template.render(_PROBE)
        except ChatTemplateError:
            sample = ""
        self.format: TemplateFormat = detect(template.source, generation_prompt=sample)

    @classmethod
    def for_model(cls, model: Model, override: str | None) -> PromptRenderer:
        """The override if it compiles, else the model's own template, else ChatML."""
        special = {
            "bos_token": model.special_token_text(model.bos_token),
            "eos_token": model.special_token_text(model.eos_token),
        }
        issues: list[str] = []
        for origin, source in (
            ("the configured chat template", override),
            ("the model's chat template", model.chat_template),
        ):
            if source is None:
                continue
            try:
                template = ChatTemplate(source, **special)
            except ChatTemplateError as error:
                logger.warning("%s does not compile: %s", origin, error)
                issues.append(f"{origin} does not compile: {error}")
                continue
            return cls(template, tuple(issues), preserved_tokens=_single_tokens(model))
        logger.info("no usable chat template: using ChatML")
        return cls(
            ChatTemplate.chatml(), (*issues, "using the ChatML chat template") if issues else ()
        )

    def render(self, request: GenerationRequest) -> str:
        if request.kind != "chat":
            return request.prompt
        inputs = request_prompt(request, self.format)
        try:
            return self.template.render(inputs.messages, tools=inputs.tools)
        except MessagesRejected as error:
            raise EngineError(
                INVALID_MESSAGES, f"The model's chat template rejected the messages: {error}"
            ) from error
        except ChatTemplateError as error:
            # the template is broken rather than the request: tell the operator too
            logger.warning("the chat template failed to render: %s", error)
            self.issues = (*self.issues, f"the chat template failed to render: {error}")[-3:]
            raise EngineError(
                INVALID_MESSAGES, f"The chat template could not render the messages: {error}"
            ) from error


def _single_tokens(model: Model) -> frozenset[int]:
    tokens = (model.tokenize(marker, add_special=False) for marker in _MARKERS)
    return frozenset(found[0] for found in tokens if len(found) == 1)
