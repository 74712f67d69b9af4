"""Float32 computed in full float32, whatever precision settings the caller chose.

Users enable TF32 (`torch.set_float32_matmul_precision("high")`, or the per-backend `fp32_precision` API).
Two computations must not follow them: the nearest-code search, where a distance rounded to TF32's 10 bits of
mantissa can pick a farther code, and the codec, whose bytes depend on every float it computes. The codec's
pinned settings enclose the quantizer's search, so the context is re-entrant: inside it, it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_depth = 0  # how many full_precision_float32 blocks are open (the settings are process-wide)


@contextmanager
def full_precision_float32() -> Iterator[None]:
    """IEEE float32 inside the block; the caller's settings are back on leaving, also after an error."""
    global _depth
    if _depth:  # an enclosing block already set, and will restore, everything
        yield
        return
    _depth += 1
    try:
        with _ieee_float32():
            yield
    finally:
        _depth -= 1


@contextmanager
def _ieee_float32() -> Iterator[None]:
    """IEEE float32 matmuls and convolutions on every backend (no TF32, no bfloat16 in float32 matmuls),
    through whichever of torch's two precision APIs the caller uses: torch refuses to mix them."""
    backends = torch.backends
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller set precisions through the per-backend `fp32_precision` API
        legacy = None
    if legacy is not None or not hasattr(backends, "fp32_precision"):
        flags = (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32)
        torch.set_float32_matmul_precision("highest")
        backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = flags
            torch.set_float32_matmul_precision(legacy or "highest")
        return
    settings = [backends, backends.cuda.matmul, backends.cudnn, backends.cudnn.conv, backends.cudnn.rnn,
                backends.mkldnn, backends.mkldnn.matmul, backends.mkldnn.conv, backends.mkldnn.rnn]
    settings = [setting for setting in settings if hasattr(setting, "fp32_precision")]
    saved = [setting.fp32_precision for setting in settings]
    for setting in settings:
        setting.fp32_precision = "ieee"
    try:
        yield
    finally:
        for setting, value in zip(settings, saved, strict=True):
            setting.fp32_precision = value
