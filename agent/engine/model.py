"""A GGUF model loaded once through llama.cpp's C API: its vocabulary, metadata and tokenizer.

Contexts (the engine's, the embedder's) are created from :attr:`Model.pointer`; the model
must outlive them.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from pathlib import Path
from typing import Any

import llama_cpp

from agent.engine.cpu_path import CpuRepack, choose_cpu_path
from paddler.protocol import CpuPath

__all__ = ["Model", "ModelLoadError"]

_llama_logger = logging.getLogger("paddler.agent.llama_cpp")
# ggml_log_level: 3 is WARN, 4 is ERROR, 5 continues the previous line; the rest is chatter.
_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
_GGML_LOG_CONTINUE = 5
_last_level = logging.DEBUG


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs through Python logging instead of writing to the process's stderr."""
    global _last_level
    if level != _GGML_LOG_CONTINUE:
        _last_level = _LOG_LEVELS.get(level, logging.DEBUG)
    message = text.decode("utf-8", errors="replace").rstrip()
    if message:
        _llama_logger.log(_last_level, "%s", message)
        if _buffer_names is not None and (found := _MODEL_BUFFER_LINE.search(message)):
            _buffer_names.append(found.group(1))


# "load_tensors:   CPU_REPACK model buffer size =    35.44 MiB", once per weight buffer
_MODEL_BUFFER_LINE = re.compile(r"(\S+) model buffer size =")
_buffer_names: list[str] | None = None  # collects those names while a load runs
_load_lock = threading.Lock()


_setup_lock = threading.Lock()
_setup_done = False


def _set_up_llama_cpp() -> None:
    global _setup_done
    with _setup_lock:
        if not _setup_done:
            llama_cpp.llama_backend_init()
            llama_cpp.llama_log_set(_forward_log, ctypes.c_void_p(0))
            _setup_done = True


class ModelLoadError(Exception):
    """The file is missing or llama.cpp could not load it."""


class Model:
    def __init__(self, pointer: Any, path: Path, cpu_path: CpuPath | None = None) -> None:
        self.pointer = pointer
        self.path = path
        self.cpu_path = cpu_path  # how the weights were placed (None: unknown)
        self.vocab = llama_cpp.llama_model_get_vocab(pointer)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(llama_cpp.llama_model_n_embd(pointer))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(pointer))
        self.bos_token = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_token = int(llama_cpp.llama_vocab_eos(self.vocab))
        self.metadata = _read_metadata(pointer)
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def load(cls, path: Path, *, cpu_repack: CpuRepack = "auto") -> Model:
        """Load ``path`` (blocking: call it off the event loop).

        Every model load in the project comes through here, so ``cpu_repack`` (see
        ``agent.engine.cpu_path``) decides for all of them whether llama.cpp's extra CPU buffer
        types may hold the weights.
        """
        global _buffer_names
        _set_up_llama_cpp()
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"no model file at {path}")
        cpu_path = choose_cpu_path(cpu_repack)
        params = llama_cpp.llama_model_default_params()
        params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP
        params.use_extra_bufts = cpu_path.extra_buffers
        with _load_lock:
            _buffer_names = []
            try:
                pointer = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
                buffers = tuple(dict.fromkeys(_buffer_names))
            finally:
                _buffer_names = None
        if not pointer:
            raise ModelLoadError(f"llama.cpp could not load {path} (is it a GGUF model?)")
        cpu_path = cpu_path.model_copy(update={"model_buffers": buffers})
        _llama_logger.info("loaded %s: %s", path.name, cpu_path.summary)
        return cls(pointer, path, cpu_path)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def chat_template(self) -> str | None:
        """The chat template the model ships, if any."""
        return self.metadata.get("tokenizer.chat_template") or None

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Tokens for ``text`` with special tokens parsed, and BOS if the model wants one.

        A BOS the text already starts with (chat templates write it) is not doubled. Never
        empty: an empty text is the BOS (or else EOS) token.
        """
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            count = int(
                llama_cpp.llama_tokenize(
                    self.vocab, data, len(data), buffer, capacity, add_special, True
                )
            )
            if count >= 0:
                break
            capacity = -count
        tokens = list(buffer[:count])
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos_token:
            del tokens[0]
        if tokens:
            return tokens
        return [self.bos_token if self.bos_token >= 0 else self.eos_token]

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (``special``: include control tokens' own text)."""
        if special:
            return self._render_piece(token, special=True)
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._render_piece(token, special=False)
        return cached

    def _render_piece(self, token: int, *, special: bool) -> bytes:
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            length = int(
                llama_cpp.llama_token_to_piece(self.vocab, token, buffer, size, 0, special)
            )
            if length >= 0:
                return buffer.raw[:length]
            size = -length

    def special_token_text(self, token: int) -> str:
        """The text of a special token such as BOS ("" when the model has none)."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.pointer is not None:
            llama_cpp.llama_model_free(self.pointer)
            self.pointer = None


def _read_metadata(pointer: Any) -> dict[str, str]:
    metadata: dict[str, str] = {}
    size = 1024
    buffer = ctypes.create_string_buffer(size)
    for index in range(int(llama_cpp.llama_model_meta_count(pointer))):
        texts: list[str] = []
        for read in (
            llama_cpp.llama_model_meta_key_by_index,
            llama_cpp.llama_model_meta_val_str_by_index,
        ):
            length = int(read(pointer, index, buffer, size))
            if length >= size:
                size = length + 1
                buffer = ctypes.create_string_buffer(size)
                length = int(read(pointer, index, buffer, size))
            texts.append(buffer.raw[: max(length, 0)].decode("utf-8", errors="replace"))
        metadata[texts[0]] = texts[1]
    return metadata
