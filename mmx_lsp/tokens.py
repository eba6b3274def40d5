"""Token estimation: the one estimate used by scoring, prompt budgets and providers.

No tokenizer is downloaded: `estimate_tokens` counts pieces the way BPE tokenizers split code,
and `TOKENS_PER_BYTE` is its median ratio to size (for sizing text from a byte range alone, on
the keystroke path, and for turning a token budget into characters).
"""

from __future__ import annotations

import re

# One match is one token: a word piece of up to 8 letters, up to 3 digits, a pair of
# punctuation characters, a line break with its indentation, a run of inner spaces.
_TOKEN = re.compile(r"[A-Za-z_]{1,8}|\d{1,3}|[^\w\s]{1,2}|\n[ \t]*|(?<=\S)[ \t]{2,}|\w+")

# Tokens per byte of source: the median ratio of estimate_tokens to size over the fixtures'
# definitions (median error 13 %). tests/unit/test_scoring.py keeps the two in step.
TOKENS_PER_BYTE = 0.25
# Characters in a token budget (prompt context windows are cut by characters).
CHARS_PER_TOKEN = round(1 / TOKENS_PER_BYTE)


def estimate_tokens(text: str) -> int:
    """An estimate of BPE tokens for source code, with no tokenizer to download.

    On the fixtures it gives 3 to 5 characters a token, the range BPE tokenizers show on
    code (more for comment-heavy files).
    """
    return len(_TOKEN.findall(text))


def tokens_for_bytes(size: int) -> int:
    """The tokens in `size` bytes of source, from its size alone."""
    return int(size * TOKENS_PER_BYTE + 0.5)


def chars_for_tokens(tokens: int) -> int:
    """The characters of source that make about `tokens` tokens."""
    return tokens * CHARS_PER_TOKEN
