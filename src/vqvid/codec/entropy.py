"""Entropy coding of code indices under per-position categorical distributions.

A prior gives, for every position of a code grid, a distribution over the K codebook entries. A range coder
(Martin 1979, "Range encoding: an algorithm for removing redundancy from a digitised message") turns the
symbols and these distributions into bytes whose length is within a few words of the information content
sum_p -log2 P(symbol_p). The coder is a queue: symbols come out of the decoder in the order they went in, so
the decoder can ask the prior for the distribution of position p after it has decoded positions < p. We use
the range coder of `constriction` (Bamler 2022, arXiv 2201.01741).

Encoder and decoder must agree on every distribution to the last bit, while a prior's float outputs may differ
by an ulp between two evaluations (batched vs incremental, another kernel). So distributions cross into the
coder only as integer PMFs made by `quantize_pmf`, a fixed procedure in integer arithmetic:

1. Round each log-probability to a grid of 1/16 nat (`STEPS_PER_NAT`), in float64 (exact for float32 input).
   Small float differences then change a row only when some entry sits within that difference of a rounding
   boundary: about 1 row in 100 for one-ulp noise on every entry of a 512-way row. The price is a rate loss of
   at most (1/16)^2 / 8 nats = 7e-4 bits per symbol (Hoeffding's lemma bounds KL(p || p e^eps / Z) by
   range(eps)^2 / 8), invisible next to the 5-9 bits a code costs.
2. Subtract the row maximum (exact on the grid) and look up exp(-steps / 16) in a table of integers
   round(2^30 exp(-j / 16)), computed with `decimal` (correctly rounded, so the same table on every platform).
   Entries more than 21.5 nats below the row maximum get weight 0.
3. Give every symbol a count of 1, so that any symbol can be coded, and share the remaining
   2^24 - K counts by cumulative flooring: cdf_i = floor(W_{<=i} (2^24 - K) / W_total), count_i = 1 + cdf_i -
   cdf_{i-1}. Rows sum to exactly 2^24 and each count is within one of its exact share.

Precision 2^24 is the most that constriction's 32-bit coder takes, and the right one for K = 512: the floor of
one count per symbol takes only K / 2^24 = 3e-5 of the mass, and a symbol of probability 0.999 costs 0.0014
bits instead of the 0.011 bits it would cost at 2^16, where the same floor would take 0.8% of the mass.

Each row is processed on its own, so the result does not depend on how rows are batched.
"""

from __future__ import annotations

import decimal
from typing import TYPE_CHECKING

import constriction
import numpy as np

if TYPE_CHECKING:
    import torch

PRECISION = 24  # bits of the fixed-point probabilities: every quantised row sums to 2**PRECISION
TOTAL = 1 << PRECISION
MAX_NUM_CODES = 1 << 16  # keeps every intermediate of `quantize_pmf` inside int64 (see `_quantize_block`)
STEPS_PER_NAT = 16  # log-probabilities are rounded to multiples of 1/16 nat before anything else

_WEIGHT_BITS = 30  # exp(0) -> 2^30; W * (2^24 - K) < 2^54 and K * W_total <= 2^16 * 2^46 stay in int64
_BLOCK_ENTRIES = 1 << 20  # rows are processed in blocks of about this many entries: 8 MB per temporary
_WORD = np.dtype("<u4")  # constriction emits 32-bit words; stored little-endian


def _weight_table() -> np.ndarray:
    """round(2^30 exp(-j / STEPS_PER_NAT)) for j = 0, 1, ... until it rounds to 0; the last entry is 0."""
    weights = []
    with decimal.localcontext() as context:
        context.prec = 40
        j = 0
        while True:
            exact = (decimal.Decimal(-j) / STEPS_PER_NAT).exp() * (1 << _WEIGHT_BITS)
            weights.append(int(exact.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)))
            if weights[-1] == 0:
                return np.array(weights, dtype=np.int64)
            j += 1


_WEIGHTS = _weight_table()  # (J,) int64, decreasing from 2^30 to 0
_LAST = len(_WEIGHTS) - 1  # grid steps below the row maximum from which a symbol gets weight 0


def _as_float_rows(log_probs: np.ndarray | torch.Tensor) -> np.ndarray:
    if not isinstance(log_probs, np.ndarray):
        # Imported here so that reading a .vqv header does not pay for importing torch.
        import torch

        if not isinstance(log_probs, torch.Tensor):
            raise TypeError(f"log_probs: expected a numpy array or a torch tensor, got {type(log_probs)}")
        log_probs = log_probs.detach().cpu()
        log_probs = (log_probs if log_probs.dtype == torch.float64 else log_probs.float()).numpy()
    if log_probs.dtype.kind != "f":
        raise TypeError(f"log_probs: expected floating point values, got dtype {log_probs.dtype}")
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs: expected shape (N, K), got {log_probs.shape}")
    num_codes = log_probs.shape[1]
    if not 2 <= num_codes <= MAX_NUM_CODES:
        raise ValueError(f"log_probs: expected K in [2, {MAX_NUM_CODES}] symbols per row, got {num_codes}")
    if np.isnan(log_probs).any() or np.isposinf(log_probs).any():
        raise ValueError("log_probs: expected no NaN or +inf entries")
    return log_probs


def quantize_pmf(log_probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """Integer PMFs for the range coder, by the fixed procedure in the module docstring.

    log_probs: (N, K) float log-probabilities (or logits: only differences within a row matter, but encoder
    and decoder must pass the same kind), on any device; -inf is allowed, NaN and +inf are not.
    Returns (N, K) uint32 counts, each >= 1, every row summing to exactly 2**PRECISION.
    """
    rows = _as_float_rows(log_probs)  # (N, K)
    counts = np.empty(rows.shape, dtype=np.uint32)
    block = _rows_per_block(rows.shape[1])
    for start in range(0, len(rows), block):
        counts[start : start + block] = _quantize_block(rows[start : start + block], start)
    return counts


def _rows_per_block(num_codes: int) -> int:
    return max(1, _BLOCK_ENTRIES // max(num_codes, 1))  # K < 2 is refused by the checks inside the loops


def _quantize_block(rows: np.ndarray, first_row: int) -> np.ndarray:
    steps = np.rint(rows.astype(np.float64) * STEPS_PER_NAT)  # (n, K) whole grid steps, -inf allowed
    top = steps.max(axis=1, keepdims=True)  # (n, 1)
    if np.isneginf(top).any():
        bad = first_row + int(np.flatnonzero(np.isneginf(top))[0])
        raise ValueError(f"log_probs: row {bad} has no finite entry")
    below = np.minimum(top - steps, _LAST).astype(np.int64)  # (n, K) grid steps under the row maximum
    weights = _WEIGHTS[below]  # (n, K) in [0, 2^30]
    weight_total = weights.sum(axis=1, keepdims=True)  # (n, 1) >= 2^30: the maximum has weight 2^30
    free = TOTAL - rows.shape[1]  # counts left after the one every symbol gets
    # floor(W_{<=i} * free / W_total) overflows int64 when written directly (2^46 * 2^24); splitting each term
    # into quotient and remainder first keeps it exact: the quotients sum to at most `free` and the
    # remainders, each < W_total, to at most K * W_total <= 2^62.
    whole, rest = np.divmod(weights * free, weight_total)  # (n, K), (n, K)
    cdf = np.cumsum(whole, axis=1) + np.cumsum(rest, axis=1) // weight_total  # (n, K), last column == free
    return 1 + np.diff(cdf, axis=1, prepend=0)


def _check_pmfs(pmfs: np.ndarray, name: str) -> np.ndarray:
    """Validates (N, K) integer PMFs and returns them as the extra counts above 1, in float64.

    constriction takes probabilities only as floats and builds its fixed-point model as
    cdf_i = floor(sum_{j<i} x_j * (2^24 - K) / sum_j x_j) + i (its `from_floating_point_probabilities_fast`).
    Passing x = count - 1 makes the scale exactly 1 and every partial sum an exact float64 integer, so the
    coder uses exactly our integers; the rate tests check it.
    """
    pmfs = np.asarray(pmfs)
    if pmfs.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer counts from quantize_pmf, got dtype {pmfs.dtype}")
    if pmfs.ndim != 2 or not 2 <= pmfs.shape[1] <= MAX_NUM_CODES:
        raise ValueError(f"{name}: expected shape (N, K) with K in [2, {MAX_NUM_CODES}], got {pmfs.shape}")
    if len(pmfs) and (pmfs.min() < 1 or (pmfs.sum(axis=1, dtype=np.int64) != TOTAL).any()):
        raise ValueError(
            f"{name}: expected counts >= 1 summing to 2**{PRECISION} in every row (use quantize_pmf)"
        )
    return pmfs.astype(np.float64) - 1.0


def _check_symbols(symbols: np.ndarray, num_codes: int, name: str) -> np.ndarray:
    symbols = np.asarray(symbols)
    if symbols.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer symbols, got dtype {symbols.dtype}")
    if len(symbols) and (symbols.min() < 0 or symbols.max() >= num_codes):
        raise ValueError(
            f"{name}: expected symbols in [0, {num_codes}), got [{symbols.min()}, {symbols.max()}]"
        )
    return symbols.astype(np.int32)


def _words(data: bytes) -> np.ndarray:
    if len(data) % _WORD.itemsize:
        raise ValueError(
            f"entropy-coded data: expected a whole number of 32-bit words, got {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=_WORD).astype(np.uint32)


_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)  # a model family: one PMF per symbol


class SequentialEncoder:
    """Range-encodes symbols one at a time, each under its own PMF; `finish` returns the bytes.

    Gives the same bytes as `encode_all` on the same symbols and PMFs.
    """

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbol: int, pmf: np.ndarray) -> None:
        """pmf: (K,) integer counts from `quantize_pmf`."""
        extra = _check_pmfs(np.asarray(pmf)[None], "pmf")  # (1, K)
        self._coder.encode(_check_symbols(np.array([symbol]), extra.shape[1], "symbol"), _CATEGORICAL, extra)

    def encode_block(self, symbols: np.ndarray, pmfs: np.ndarray) -> None:
        """The next symbols (n,) under their PMFs (n, K) from `quantize_pmf`: the same bytes as n calls of
        `encode`, in fewer calls into the coder."""
        symbols, pmfs = np.asarray(symbols), np.asarray(pmfs)
        if symbols.ndim != 1 or pmfs.ndim != 2 or len(symbols) != len(pmfs):
            raise ValueError(f"encode_block: expected symbols (n,) and pmfs (n, K), got {symbols.shape} and "
                             f"{pmfs.shape}")
        block = _rows_per_block(pmfs.shape[1])
        for start in range(0, len(symbols), block):
            extra = _check_pmfs(pmfs[start : start + block], "pmfs")  # (b, K)
            self._coder.encode(_check_symbols(symbols[start : start + block], extra.shape[1], "symbols"),
                               _CATEGORICAL, extra)

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype(_WORD).tobytes()


class SequentialDecoder:
    """Decodes symbols one at a time from the bytes of `SequentialEncoder` or `encode_all`.

    The caller supplies the PMF of each position as it goes, typically computed from the symbols decoded so
    far.
    Bytes that were not produced under the same PMFs decode to arbitrary symbols or raise ValueError; catching
    damage is the container's job (CRC32 per chunk).
    """

    def __init__(self, data: bytes) -> None:
        self._coder = constriction.stream.queue.RangeDecoder(_words(data))

    def decode(self, pmf: np.ndarray) -> int:
        """pmf: (K,) integer counts from `quantize_pmf`, the same the encoder used at this position."""
        return int(_decode(self._coder, _check_pmfs(np.asarray(pmf)[None], "pmf"))[0])


def decode_each(decoders: list[SequentialDecoder | None], pmfs: np.ndarray) -> list[int | ValueError | None]:
    """The next symbol of each of n independent streams, stream i under row i of `pmfs` (n, K) from
    `quantize_pmf`: a symbol, the ValueError of a stream that is invalid under its PMF, or None where the
    decoder is None (a row without a stream). The same symbols as n calls of `SequentialDecoder.decode`; the
    rows are checked once, together, which saves most of the cost of a call."""
    extra = _check_pmfs(pmfs, "pmfs")  # (n, K)
    if len(extra) != len(decoders):
        raise ValueError(f"decode_each: expected {len(decoders)} rows of PMFs, one per stream, got {len(extra)}")
    symbols: list[int | ValueError | None] = []
    for row, decoder in enumerate(decoders):
        if decoder is None:
            symbols.append(None)
            continue
        try:
            symbols.append(int(_decode(decoder._coder, extra[row : row + 1])[0]))
        except ValueError as error:
            symbols.append(error)
    return symbols


def _decode(coder: constriction.stream.queue.RangeDecoder, extra: np.ndarray) -> np.ndarray:
    try:
        return coder.decode(_CATEGORICAL, extra)
    except AssertionError as error:  # how constriction reports a stream that no encoder could have produced
        raise ValueError(f"entropy-coded data: invalid under the given PMFs ({error})") from None


def encode_all(symbols: np.ndarray, pmfs: np.ndarray) -> bytes:
    """Range-encodes symbols (N,) in [0, K) under PMFs (N, K) from `quantize_pmf`, all known in advance."""
    symbols = np.asarray(symbols)
    pmfs = np.asarray(pmfs)
    if symbols.ndim != 1 or pmfs.ndim != 2 or len(symbols) != len(pmfs):
        raise ValueError(
            f"encode_all: expected symbols (N,) and pmfs (N, K), got {symbols.shape} and {pmfs.shape}"
        )
    coder = constriction.stream.queue.RangeEncoder()
    block = _rows_per_block(pmfs.shape[1])
    for start in range(0, len(symbols), block):  # a queue: coding in blocks gives the same bytes
        extra = _check_pmfs(pmfs[start : start + block], "pmfs")  # (n, K)
        coder.encode(
            _check_symbols(symbols[start : start + block], extra.shape[1], "symbols"), _CATEGORICAL, extra
        )
    return coder.get_compressed().astype(_WORD).tobytes()


def decode_all(data: bytes, pmfs: np.ndarray) -> np.ndarray:
    """Decodes len(pmfs) symbols, (N,) int64, from the bytes of `encode_all` under the same PMFs (N, K)."""
    pmfs = np.asarray(pmfs)
    if pmfs.ndim != 2:
        raise ValueError(f"decode_all: expected pmfs of shape (N, K), got {pmfs.shape}")
    coder = constriction.stream.queue.RangeDecoder(_words(data))
    block = _rows_per_block(pmfs.shape[1])
    blocks = [
        _decode(coder, _check_pmfs(pmfs[start : start + block], "pmfs"))
        for start in range(0, len(pmfs), block)
    ]
    return np.concatenate(blocks).astype(np.int64) if blocks else np.zeros(0, dtype=np.int64)


def information_content(symbols: np.ndarray, pmfs: np.ndarray) -> float:
    """sum -log2 P(symbol) in bits under the quantised PMFs: what a perfect coder would spend."""
    symbols = np.asarray(symbols)
    extra = _check_pmfs(pmfs, "pmfs")  # (N, K)
    symbols = _check_symbols(symbols, extra.shape[1], "symbols")
    if symbols.shape != (len(extra),):
        raise ValueError(f"information_content: expected {len(extra)} symbols, got shape {symbols.shape}")
    counts = extra[np.arange(len(extra)), symbols] + 1.0  # (N,)
    return float(np.sum(PRECISION - np.log2(counts)))
