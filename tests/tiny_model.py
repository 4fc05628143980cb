"""Build a tiny, randomly initialised llama-architecture GGUF model for tests.

The model is meaningless (random weights) but fully loadable by llama.cpp: it
has an SPM ("llama") vocabulary with byte-fallback tokens, a ChatML chat
template and a 2-layer transformer with a 64-wide residual stream. It loads in
milliseconds and generates thousands of tokens per second on a CPU.

The output projection rows of every non-normal token (control, unknown, byte)
are zero, while normal tokens get random rows, so greedy decoding practically
never emits an end-of-generation token and always produces printable text:
generation runs until ``max_tokens``.

The tokenizer does not add a space prefix, so ``detokenize(tokenize(text))`` gives
back ``text`` exactly (llama-cpp-python only drops one leading space after BOS).
Token ids: 0 ``<unk>``, 1 ``<s>`` (BOS), 2 ``</s>`` (EOS), 3 ``<|im_start|>``,
4 ``<|im_end|>`` (end of turn), 5..260 byte tokens ``<0x00>``..``<0xFF>``, then
``\u2581``, printable ASCII and a few multi-character pieces (386 tokens in all).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

__all__ = [
    "BOS_ID",
    "CHATML_TEMPLATE",
    "EOS_ID",
    "IM_END_ID",
    "IM_START_ID",
    "UNK_ID",
    "build_tiny_gguf",
]

UNK_ID = 0
BOS_ID = 1
EOS_ID = 2
IM_START_ID = 3
IM_END_ID = 4

N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_LAYER = 2
N_FF = 128
N_CTX_TRAIN = 2048
RMS_EPS = 1e-5

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Word-start marker used by SentencePiece in place of a space.
_SPACE = "\u2581"

# Multi-character pieces. SPM merges bigrams only if the concatenation is in the
# vocabulary, so every word comes with all of its prefixes.
_WORDS = ("the", "hello", "world", "paddler", "llama")
_SUFFIXES = ("in", "ing", "er", "on", "ed")


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []

    def add(text: str, score: float, token_type: gguf.TokenType) -> None:
        tokens.append(text)
        scores.append(score)
        types.append(int(token_type))

    add("<unk>", 0.0, gguf.TokenType.UNKNOWN)
    add("<s>", 0.0, gguf.TokenType.CONTROL)
    add("</s>", 0.0, gguf.TokenType.CONTROL)
    add("<|im_start|>", 0.0, gguf.TokenType.CONTROL)
    add("<|im_end|>", 0.0, gguf.TokenType.CONTROL)
    for byte in range(256):
        add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)
    # Single characters: the word-start marker and printable ASCII except space
    # (SPM escapes spaces to the marker).
    add(_SPACE, -100.0, gguf.TokenType.NORMAL)
    for code in range(0x21, 0x7F):
        add(chr(code), -100.0, gguf.TokenType.NORMAL)
    pieces: list[str] = []
    for word in _WORDS:
        marked = _SPACE + word
        pieces.extend(marked[:end] for end in range(2, len(marked) + 1))
    for suffix in _SUFFIXES:
        pieces.extend(suffix[:end] for end in range(2, len(suffix) + 1))
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            # Longer pieces get higher scores so they are merged first.
            add(piece, float(len(piece)), gguf.TokenType.NORMAL)
    return tokens, scores, types


def _random(
    rng: np.random.Generator, shape: tuple[int, ...], std: float
) -> npt.NDArray[np.float32]:
    return (rng.standard_normal(shape) * std).astype(np.float32)


_MATRIX_TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
}


def _add_matrix(
    writer: gguf.GGUFWriter,
    name: str,
    matrix_type: gguf.GGMLQuantizationType,
    values: npt.NDArray[np.float32],
) -> None:
    if matrix_type == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, values)
    else:
        writer.add_tensor(name, gguf.quants.quantize(values, matrix_type), raw_dtype=matrix_type)


def build_tiny_gguf(path: Path, *, seed: int = 0, quantization: str = "f32") -> Path:
    """Write a tiny llama GGUF with random weights (seeded) to ``path`` and return it.

    The same ``seed`` always produces a byte-identical file. ``quantization`` "q4_0" stores
    the layers' matrices as Q4_0, the type llama.cpp repacks for AVX2 and AMX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD
    n_embd_kv = head_dim * N_HEAD_KV

    matrix_type = _MATRIX_TYPES[quantization]
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"tiny-llama-test-seed{seed}")
    writer.add_file_type(
        int(gguf.LlamaFileType.ALL_F32 if quantization == "f32" else gguf.LlamaFileType.MOSTLY_Q4_0)
    )
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(RMS_EPS)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    # numpy shapes are (rows, cols) = (n_out, n_in); GGUF stores them reversed.
    writer.add_tensor("token_embd.weight", _random(rng, (n_vocab, N_EMBD), 1.0))

    def matrix(name: str, shape: tuple[int, int], std: float) -> None:
        _add_matrix(writer, name, matrix_type, _random(rng, shape, std))

    for layer in range(N_LAYER):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        matrix(f"{prefix}.attn_q.weight", (N_EMBD, N_EMBD), 0.2)
        matrix(f"{prefix}.attn_k.weight", (n_embd_kv, N_EMBD), 0.2)
        matrix(f"{prefix}.attn_v.weight", (n_embd_kv, N_EMBD), 0.2)
        matrix(f"{prefix}.attn_output.weight", (N_EMBD, N_EMBD), 0.1)
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        matrix(f"{prefix}.ffn_gate.weight", (N_FF, N_EMBD), 0.2)
        matrix(f"{prefix}.ffn_up.weight", (N_FF, N_EMBD), 0.2)
        matrix(f"{prefix}.ffn_down.weight", (N_EMBD, N_FF), 0.1)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    output = _random(rng, (n_vocab, N_EMBD), 1.0)
    normal = np.array(types) == int(gguf.TokenType.NORMAL)
    # Only normal tokens can win the argmax: everything else (EOS, <|im_end|>,
    # byte tokens) has a zero logit, while the best of ~100 random normal rows
    # is positive for any hidden state.
    output[~normal] = 0.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
