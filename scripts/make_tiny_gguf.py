#!/usr/bin/env python3
"""Write a tiny, deterministic llama-architecture GGUF model for integration tests.

The model has two layers of random weights (fixed seed) and a byte-fallback
SentencePiece-style vocabulary of code-ish pieces, so llama.cpp tokenizes real text,
reports real usage counts and streams real tokens. Its output is gibberish, but the same
at temperature 0 on every run.

Properties the tests rely on:

* The output layer can only produce printable-ASCII "normal" pieces: the rows of every
  control, byte and unknown token are zero, so their logits are exactly 0 while the best
  normal piece always scores above 0. The model therefore never emits end-of-sequence and a
  request with `max_tokens=N` always generates exactly N tokens of valid UTF-8 text.
* No space prefix (`tokenizer.ggml.add_space_prefix = false`): tokens cover the text
  exactly, and llama-cpp-python puts a completion's `suffix` into the prompt as it is
  (between fill-in-the-middle marker tokens), so the suffix counts in `prompt_tokens`.
  The vocabulary also carries `<PRE>`, `<SUF>`, `<MID>` with their GGUF keys.
* A plain chat template (`role: content` lines) is stored in the metadata, so
  `/v1/chat/completions` works without `--chat_format`.

Usage: python scripts/make_tiny_gguf.py OUT.gguf [--seed N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np

SEED = 20261129
ARCH = "llama"
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_LAYER = 2
N_CTX = 2048
RMS_EPS = 1e-5

CONTROL = ["<unk>", "<s>", "</s>", "<PRE>", "<SUF>", "<MID>"]
UNK_ID, BOS_ID, EOS_ID, PRE_ID, SUF_ID, MID_ID = range(len(CONTROL))

# Words whose pieces (every prefix of at least two characters, with and without the
# SentencePiece space marker) join the single printable characters in the vocabulary.
WORDS = [
    "def", "return", "self", "class", "import", "from", "for", "while", "if", "else",
    "elif", "in", "not", "and", "or", "None", "True", "False", "print", "range", "len",
    "value", "name", "result", "items", "data", "key", "list", "dict", "int", "str",
    "function", "const", "let", "var", "fn", "pub", "func", "package", "main", "error",
    "the", "a", "to", "of", "is", "it", "that", "this", "with", "hello", "world",
]  # fmt: skip

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

SPACE = "\u2581"  # SentencePiece's visible space


def vocabulary() -> tuple[list[str], list[float], list[int], set[int]]:
    """Tokens, scores, token types, and the ids that the model is allowed to emit."""
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    emittable: set[int] = set()

    def add(piece: str, score: float, kind: gguf.TokenType, emit: bool = False) -> None:
        if emit:
            emittable.add(len(tokens))
        tokens.append(piece)
        scores.append(score)
        types.append(int(kind))

    add(CONTROL[UNK_ID], 0.0, gguf.TokenType.UNKNOWN)
    for piece in CONTROL[1:]:
        add(piece, 0.0, gguf.TokenType.CONTROL)
    for byte in range(256):
        add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)

    pieces: dict[str, None] = {SPACE: None}
    for code in range(0x21, 0x7F):
        pieces[chr(code)] = None
    for word in WORDS:
        for text in (word, SPACE + word):
            for end in range(2, len(text) + 1):
                pieces[text[:end]] = None
    # Longer pieces score higher, so the tokenizer merges towards whole words.
    for piece in pieces:
        add(piece, float(len(piece)), gguf.TokenType.NORMAL, emit=True)
    return tokens, scores, types, emittable


def write_model(out: Path, seed: int = SEED) -> None:
    rng = np.random.default_rng(seed)
    tokens, scores, types, emittable = vocabulary()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD

    def matrix(rows: int, cols: int, scale: float) -> np.ndarray:
        # numpy (rows, cols) is ggml ne = [cols, rows]: a rows x cols weight for x @ W.T.
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_name("tiny-llama (random weights, for tests)")
        writer.add_context_length(N_CTX)
        writer.add_embedding_length(N_EMBD)
        writer.add_block_count(N_LAYER)
        writer.add_feed_forward_length(N_FF)
        writer.add_head_count(N_HEAD)
        writer.add_head_count_kv(N_HEAD_KV)
        writer.add_rope_dimension_count(head_dim)
        writer.add_layer_norm_rms_eps(RMS_EPS)
        writer.add_vocab_size(n_vocab)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)

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
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_PRE_ID, PRE_ID)
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_SUF_ID, SUF_ID)
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_MID_ID, MID_ID)
        writer.add_chat_template(CHAT_TEMPLATE)

        embd_scale = 1.0
        proj_scale = 1.0 / np.sqrt(N_EMBD)
        writer.add_tensor("token_embd.weight", matrix(n_vocab, N_EMBD, embd_scale))
        for layer in range(N_LAYER):
            prefix = f"blk.{layer}"
            ones = np.ones(N_EMBD, dtype=np.float32)
            writer.add_tensor(f"{prefix}.attn_norm.weight", ones)
            writer.add_tensor(f"{prefix}.attn_q.weight", matrix(N_EMBD, N_EMBD, proj_scale))
            writer.add_tensor(
                f"{prefix}.attn_k.weight", matrix(head_dim * N_HEAD_KV, N_EMBD, proj_scale)
            )
            writer.add_tensor(
                f"{prefix}.attn_v.weight", matrix(head_dim * N_HEAD_KV, N_EMBD, proj_scale)
            )
            writer.add_tensor(f"{prefix}.attn_output.weight", matrix(N_EMBD, N_EMBD, proj_scale))
            writer.add_tensor(f"{prefix}.ffn_norm.weight", ones.copy())
            writer.add_tensor(f"{prefix}.ffn_gate.weight", matrix(N_FF, N_EMBD, proj_scale))
            writer.add_tensor(f"{prefix}.ffn_up.weight", matrix(N_FF, N_EMBD, proj_scale))
            writer.add_tensor(
                f"{prefix}.ffn_down.weight", matrix(N_EMBD, N_FF, 1.0 / np.sqrt(N_FF))
            )
        writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        # Logits of non-emittable tokens are exactly 0; emittable ones are N(0, 3^2), so the
        # greedy pick is always an emittable piece.
        output = matrix(n_vocab, N_EMBD, 3.0 / np.sqrt(N_EMBD))
        mask = np.zeros(n_vocab, dtype=bool)
        mask[sorted(emittable)] = True
        output[~mask] = 0.0
        writer.add_tensor("output.weight", output)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.chmod(0o644)  # mkstemp makes it private
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write the .gguf file")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the weights")
    args = parser.parse_args(argv)
    write_model(args.out, args.seed)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
