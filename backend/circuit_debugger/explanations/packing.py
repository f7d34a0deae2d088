"""One node's example windows as one compact blob (explanations database format 2).

Format 1 stored every example as a row with JSON token ids and JSON activations (about 200
bytes per window, 25 windows per node, quantile windows repeating random ones): 19-30 MB per
embedded model. Format 2 stores, per node, one zlib-compressed little-endian record:

    header   <BBBBHHH : version (1), before, after, token bytes (0|2|4), n_top, n_random, n_quantile
             <B       : activation bytes (2: float16 | 4: float32)
    quantile uint16[n_quantile]              index into the random examples (sorted descending)
    values   float32[n_top + n_random]       each example's activation (rounded to 4 decimals)
    tokens   token bytes 0: uint32[n], where each example token is in the mined corpus (row ×
             row length + position); its window is read from the database's corpus rows
             (`corpus_rows`), so windows are not stored once per node that fires on them;
             2|4: uint16|uint32[n, before+after+1] window token ids inline (all-ones = outside
             the document; `repack` of format 1 files, which kept no corpus)
    acts     float16|float32[n, width]       the node's activation at each; NaN = outside the document

Window activations are float16 (about 3 significant digits; float32 when one exceeds float16's
range), served rounded to 4 significant digits (which reads back to the stored value). Quantile examples
are references to random examples (they were always drawn from them), not copies; zlib removes
the repetition among a node's top windows (which often share their context).
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable, Optional, Sequence

import numpy as np

VERSION = 1
_HEAD = struct.Struct("<BBBBHHHB")
Example = tuple[float, Sequence[Optional[int]], Sequence[Optional[float]]]  # (activation, token ids, acts)


def pack(top: Sequence[Example], random: Sequence[Example], quantile: Sequence[int], before: int, after: int,
         where: Optional[Sequence[int]] = None) -> bytes:
    """`random` sorted by activation, descending; `quantile` indexes into it. `where`: each
    example token's index in the mined corpus (its window tokens are then not stored)."""
    width = before + after + 1
    examples = list(top) + list(random)
    n = len(examples)
    ids = [t for _, toks, _ in examples for t in toks if t is not None]
    tok_bytes = 0 if where is not None else 2 if not ids or max(ids) < 0xFFFF else 4
    tok_dtype, tok_none = (np.uint16, 0xFFFF) if tok_bytes == 2 else (np.uint32, 0xFFFFFFFF)
    tokens = np.full((n, width), tok_none, dtype=tok_dtype)
    acts = np.full((n, width), np.nan, dtype=np.float32)
    for i, (_, toks, a) in enumerate(examples):
        if len(toks) != width or len(a) != width:
            raise ValueError(f"example {i}: window of {len(toks)} tokens, expected {width}")
        for w, (t, v) in enumerate(zip(toks, a)):
            if t is not None:
                tokens[i, w] = t
                acts[i, w] = np.nan if v is None else v
    finite = acts[np.isfinite(acts)]
    act_bytes = 2 if finite.size == 0 or float(np.abs(finite).max()) < 60000 else 4
    values = np.array([round(float(v), 4) for v, _, _ in examples], dtype="<f4")
    if where is not None and len(where) != n:
        raise ValueError(f"{len(where)} corpus positions for {n} examples")
    body = b"".join([
        _HEAD.pack(VERSION, before, after, tok_bytes, len(top), len(random), len(quantile), act_bytes),
        np.asarray(quantile, dtype="<u2").tobytes(), values.tobytes(),
        np.asarray(where, dtype="<u4").tobytes() if where is not None else tokens.astype(tokens.dtype.newbyteorder("<")).tobytes(),
        acts.astype("<f2" if act_bytes == 2 else "<f4").tobytes()])
    return zlib.compress(body, 9)


def _decimals(a: np.ndarray) -> list:
    """Values as 4-significant-digit decimals (float16 keeps fewer, so each reads back to the
    stored value); NaN as None."""
    x = a.astype(np.float64)
    ok = np.isfinite(x) & (x != 0)
    scale = np.ones_like(x)
    scale[ok] = 10.0 ** (3 - np.floor(np.log10(np.abs(x[ok]))))
    y = np.where(ok, np.round(x * scale) / scale, x) if a.dtype == np.float16 else x
    return [None if v != v else v for v in y.tolist()]


def unpack(blob: bytes, windows: Optional[Callable[[list, int, int], list]] = None) -> dict:
    """{"center", "top": [...], "random": [...], "quantile": [...]} with each example as
    {"activation", "tokens" (ids or None), "acts" (floats or None)}; quantile examples are the
    random examples they reference. `windows(where, before, after)` gives the token windows of
    corpus positions (records that store positions, not tokens)."""
    body = zlib.decompress(blob)
    version, before, after, tok_bytes, n_top, n_rnd, n_q, act_bytes = _HEAD.unpack_from(body)
    if version != VERSION:
        raise ValueError(f"examples record version {version} (this reader knows {VERSION})")
    width, n, off = before + after + 1, n_top + n_rnd, _HEAD.size
    quantile = np.frombuffer(body, "<u2", n_q, off).tolist()
    off += 2 * n_q
    values = np.frombuffer(body, "<f4", n, off)
    off += 4 * n
    if tok_bytes == 0:
        if windows is None:
            raise ValueError("this record stores corpus positions: give windows()")
        token_rows = windows(np.frombuffer(body, "<u4", n, off).tolist(), before, after)
        off += 4 * n
    else:
        none = 0xFFFF if tok_bytes == 2 else 0xFFFFFFFF
        tokens = np.frombuffer(body, "<u2" if tok_bytes == 2 else "<u4", n * width, off).reshape(n, width)
        token_rows = [[None if t == none else t for t in row] for row in tokens.tolist()]
        off += tok_bytes * n * width
    acts = np.frombuffer(body, "<f2" if act_bytes == 2 else "<f4", n * width, off).reshape(n, width)
    all_acts = _decimals(acts.reshape(-1))
    examples = []
    for i, toks in enumerate(token_rows):
        examples.append({"activation": round(float(values[i]), 4), "tokens": toks,
                         "acts": [None if t is None else a for t, a in zip(toks, all_acts[i * width:(i + 1) * width])]})
    random = examples[n_top:]
    return {"center": before, "top": examples[:n_top], "random": random, "quantile": [random[q] for q in quantile]}


__all__ = ["pack", "unpack", "VERSION"]
