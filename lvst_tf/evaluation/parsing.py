"""Parsing of the evaluation's list flags: frame sizes `HxW` and integer lists.

This is the one parser of `HxW` sizes for the tools (`tools/eval.py`, and the benchmark scripts may use
:func:`parse_size` too). Every error is a `ValueError` that names the flag and the expected form.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def parse_size(text: str, name: str = "size") -> tuple[int, int]:
    """`"512x768"` -> `(512, 768)`: height x width, both positive ints.

    Raises:
      ValueError naming `name` unless `text` is `HxW` with positive integers.
    """
    match = _SIZE.fullmatch(str(text))
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(
            f"{name} takes sizes HxW (height x width, positive integers) such as '512x512', "
            f"got {text!r}."
        )
    return int(match.group(1)), int(match.group(2))


def parse_sizes(text: str, name: str = "resolutions") -> list[tuple[int, int]]:
    """`"512x512,3000x4000"` -> `[(512, 512), (3000, 4000)]` (a comma list of :func:`parse_size`)."""
    items = str(text).split(",")
    if not str(text).strip():
        items = [""]
    out = []
    for item in items:
        try:
            out.append(parse_size(item, name))
        except ValueError:
            raise ValueError(
                f"{name} must be a comma list of HxW sizes such as '512x512,3000x4000', got "
                f"{text!r} (bad item {item.strip()!r})."
            ) from None
    return out


def parse_int_list(text: str, name: str = "r", minimum: int = 1) -> list[int]:
    """`"1,8"` -> `[1, 8]`; every value an integer >= `minimum`, no duplicates."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not re.fullmatch(r"\d+", item) or int(item) < minimum:
            raise ValueError(
                f"{name} must be a comma list of integers >= {minimum} such as '1,8', got {text!r}."
            )
        out.append(int(item))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} lists a value twice: {text!r}.")
    return out
