import decimal
import hashlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqvid.codec import entropy
from vqvid.codec.entropy import (
    PRECISION,
    TOTAL,
    SequentialDecoder,
    SequentialEncoder,
    decode_all,
    decode_each,
    encode_all,
    information_content,
    quantize_pmf,
)

# Bytes of the .vqv format (versions 1 and 2 code alike), from `quantize_pmf` and constriction's range coder.
# A change here means existing files no longer decode: bump FORMAT_VERSION in vqvid.codec.container together
# with these, or keep constriction within the range pyproject.toml pins.
GOLDEN_QUANTIZE_SHA256 = "42960dc04869a4d1079f32642703ef7e536d23ab087c81c69f7737f339d66016"
GOLDEN_ENCODE_HEX = "1c8ebe0020b44218"
GOLDEN_CHUNK_PMFS_SHA256 = "0be44109613791d723ca25c660557bbde052718ea2345ffbf10841be2fd214e0"
GOLDEN_CHUNK_SHA256 = "c3515cb832bd6ad1ab5e9012f65899f65df294ed5a6ffcf16b0d48b14badb3a3"
GOLDEN_CHUNK_BYTES = 708


def reference_quantize(row: np.ndarray) -> list[int]:
    """The procedure of the module docstring with Python integers and `decimal`, one entry at a time."""
    steps = [round(float(x) * 16) if math.isfinite(x) else None for x in row]  # round() is half-to-even
    top = max(s for s in steps if s is not None)
    with decimal.localcontext() as context:
        context.prec = 60
        weights = [
            0
            if s is None
            else int(
                ((decimal.Decimal(s - top) / 16).exp() * 2**30).to_integral_value(decimal.ROUND_HALF_EVEN)
            )
            for s in steps
        ]
    free, total, cumulative, previous, counts = TOTAL - len(row), sum(weights), 0, 0, []
    for weight in weights:
        cumulative += weight
        cdf = cumulative * free // total  # exact: Python integers do not overflow
        counts.append(1 + cdf - previous)
        previous = cdf
    return counts


def log_softmax_rows(rng: np.random.Generator, rows: int, num_codes: int, scale: float) -> np.ndarray:
    logits = torch.from_numpy(rng.normal(size=(rows, num_codes)) * scale).float()
    return torch.log_softmax(logits, dim=-1).numpy()  # (rows, K) float32


def peaked_rows(rng: np.random.Generator, rows: int, num_codes: int) -> np.ndarray:
    """One symbol near probability 1, the rest around e^-40: far below the 2^-24 resolution."""
    log_probs = np.full((rows, num_codes), -40.0, dtype=np.float32)
    log_probs += rng.normal(size=log_probs.shape).astype(np.float32)
    log_probs[np.arange(rows), rng.integers(0, num_codes, rows)] = 0.0
    return log_probs


def sample(rng: np.random.Generator, pmfs: np.ndarray) -> np.ndarray:
    """One symbol per row, drawn from the quantised PMFs themselves."""
    cdf = np.cumsum(pmfs, axis=1, dtype=np.int64)  # (N, K)
    draws = rng.integers(0, TOTAL, size=(len(pmfs), 1))
    return (cdf > draws).argmax(axis=1)


# ---------------------------------------------------------------------------------------------- quantize_pmf


def test_quantize_matches_the_integer_reference():
    rng = np.random.default_rng(0)
    ties = np.array([[1 / 32, 3 / 32, -5 / 32, -7 / 32, 0.0]], dtype=np.float32)  # x * 16 on .5: half-to-even
    with_inf = np.array([[0.0, -np.inf, -1.0, -np.inf]], dtype=np.float32)
    extreme = np.array([[0.0, -1e30, -21.5, -21.6, 50.0, -16.6]], dtype=np.float32)  # beyond the weight table
    for rows in [
        log_softmax_rows(rng, 3, 512, 3.0),
        peaked_rows(rng, 2, 512),
        (rng.normal(size=(2, 17)) * 20).astype(np.float32),  # unnormalised logits
        np.array([[0.0, 0.0], [0.0, -3.0]], dtype=np.float32),
        ties,
        with_inf,
        extreme,
    ]:
        counts = quantize_pmf(rows)
        for row, row_counts in zip(rows, counts, strict=True):
            assert row_counts.tolist() == reference_quantize(row)


def test_quantize_by_hand():
    # Uniform: 1 + (2^24 - 512) / 512 = 32768 each.
    assert np.all(quantize_pmf(np.zeros((1, 512), dtype=np.float32)) == 32768)
    # A symbol of probability 0 still gets one count; the other gets the rest.
    assert quantize_pmf(np.array([[0.0, -np.inf]])).tolist() == [[TOTAL - 1, 1]]
    assert quantize_pmf(np.array([[-0.5, -0.5, -0.5]])).tolist() == [[5592405, 5592405, 5592406]]


@pytest.mark.parametrize("num_codes", [2, 3, 512, 1000])
def test_quantize_rows_sum_exactly_and_every_symbol_is_codable(num_codes):
    rng = np.random.default_rng(num_codes)
    rows = np.concatenate([log_softmax_rows(rng, 50, num_codes, 4.0), peaked_rows(rng, 50, num_codes)])
    counts = quantize_pmf(rows)
    assert counts.dtype == np.uint32 and counts.shape == rows.shape
    assert counts.min() >= 1
    np.testing.assert_array_equal(counts.sum(axis=1, dtype=np.int64), np.full(len(rows), TOTAL))


def test_quantize_is_deterministic_and_independent_of_batching():
    rng = np.random.default_rng(1)
    rows = log_softmax_rows(rng, 300, 512, 3.0)
    counts = quantize_pmf(rows)
    np.testing.assert_array_equal(quantize_pmf(rows), counts)
    np.testing.assert_array_equal(quantize_pmf(rows[::-1].copy())[::-1], counts)
    np.testing.assert_array_equal(quantize_pmf(rows[7:8]), counts[7:8])
    np.testing.assert_array_equal(
        np.concatenate([quantize_pmf(rows[:123]), quantize_pmf(rows[123:])]), counts
    )
    np.testing.assert_array_equal(quantize_pmf(np.asfortranarray(rows)), counts)


def test_quantize_takes_tensors_like_arrays():
    rng = np.random.default_rng(2)
    rows = log_softmax_rows(rng, 20, 64, 3.0)
    counts = quantize_pmf(rows)
    np.testing.assert_array_equal(quantize_pmf(torch.from_numpy(rows)), counts)
    np.testing.assert_array_equal(quantize_pmf(torch.from_numpy(rows).requires_grad_()), counts)
    # float64 values equal to the float32 ones give the same counts
    np.testing.assert_array_equal(quantize_pmf(torch.from_numpy(rows).double()), counts)


def test_quantize_shrugs_off_float32_noise_in_most_rows():
    """A relative perturbation of 1e-7 moves every float32 entry by about one ulp. Measured: 98.9-99.8% of
    512-way rows keep every count (rows change only when an entry sits that close to a 1/16-nat boundary)."""
    rng = np.random.default_rng(3)
    rows = np.concatenate([log_softmax_rows(rng, 1000, 512, scale) for scale in (1.0, 3.0, 8.0)])
    noise = rng.choice(np.array([-1e-7, 1e-7], dtype=np.float32), size=rows.shape)
    perturbed = rows * (1 + noise)  # float32
    assert (perturbed != rows).mean() > 0.99  # the perturbation really reaches the float32 values
    unchanged = (quantize_pmf(perturbed) == quantize_pmf(rows)).all(axis=1).mean()
    assert unchanged >= 0.97


def test_quantization_costs_almost_no_rate():
    """The grid and the integer counts together cost at most ~1e-3 bits per symbol over the float model."""
    rng = np.random.default_rng(4)
    rows = log_softmax_rows(rng, 2000, 512, 3.0)
    probs = np.exp(rows.astype(np.float64))
    symbols = (np.cumsum(probs, axis=1) > rng.random((len(rows), 1))).argmax(axis=1)
    exact_bits = -np.log2(probs[np.arange(len(rows)), symbols]).sum()
    quantised_bits = information_content(symbols, quantize_pmf(rows))
    assert abs(quantised_bits - exact_bits) / len(rows) < 2e-3


def test_quantize_output_is_pinned():
    i = np.arange(64)[:, None]
    k = np.arange(512)[None, :]
    rows = (-((i * 7919 + k * 104729) % 20011) / 997).astype(np.float32)  # (64, 512) in (-20.1, 0]
    digest = hashlib.sha256(quantize_pmf(rows).astype("<u4").tobytes()).hexdigest()
    assert digest == GOLDEN_QUANTIZE_SHA256


@pytest.mark.parametrize(
    "rows, error, match",
    [
        (np.zeros((3, 1), dtype=np.float32), ValueError, "K in"),
        (np.zeros(5, dtype=np.float32), ValueError, r"shape \(N, K\)"),
        (np.array([[0.0, np.nan]]), ValueError, "NaN"),
        (np.array([[0.0, np.inf]]), ValueError, r"\+inf"),
        (np.array([[0.0, 0.0], [-np.inf, -np.inf]]), ValueError, "row 1 has no finite entry"),
        (np.zeros((2, 4), dtype=np.int64), TypeError, "floating point"),
        ([[0.0, 1.0]], TypeError, "numpy array or a torch tensor"),
    ],
)
def test_quantize_refuses_bad_input(rows, error, match):
    with pytest.raises(error, match=match):
        quantize_pmf(rows)


# ---------------------------------------------------------------------------------------------- range coding


def code_both_ways(symbols: np.ndarray, pmfs: np.ndarray) -> bytes:
    """Encodes batched and position by position, checks both give the same bytes and both decoders give the
    symbols back; returns the bytes."""
    batched = encode_all(symbols, pmfs)
    encoder = SequentialEncoder()
    for symbol, pmf in zip(symbols, pmfs, strict=True):
        encoder.encode(int(symbol), pmf)
    assert encoder.finish() == batched
    in_blocks = SequentialEncoder()
    for part in np.array_split(np.arange(len(symbols)), 3):  # blocks of any size, empty ones too
        in_blocks.encode_block(symbols[part], pmfs[part])
    assert in_blocks.finish() == batched
    np.testing.assert_array_equal(decode_all(batched, pmfs), symbols)
    decoder = SequentialDecoder(batched)
    np.testing.assert_array_equal([decoder.decode(pmf) for pmf in pmfs], symbols)
    return batched


def test_decode_each_decodes_streams_side_by_side():
    """One symbol per stream and call, row i for stream i: what n sequential decoders give. A stream without a
    decoder gives None, a stream invalid under its PMF its ValueError, and the others go on."""
    rng = np.random.default_rng(3)
    pmfs = quantize_pmf(log_softmax_rows(rng, 3 * 20, 16, 2.0)).reshape(3, 20, 16)  # (streams, n, K)
    symbols = np.stack([sample(rng, stream) for stream in pmfs])  # (3, 20)
    streams = [encode_all(symbols[i], pmfs[i]) for i in range(3)]
    peaked = quantize_pmf(np.array([[0.0] + [-30.0] * 15], dtype=np.float32))[0]  # (K,) almost all on 0
    decoders = [SequentialDecoder(streams[0]), None, SequentialDecoder(b"\xff" * 8), SequentialDecoder(streams[2])]
    decoded = [decode_each(decoders, np.stack([pmfs[0, j], pmfs[1, j], peaked, pmfs[2, j]])) for j in range(20)]
    np.testing.assert_array_equal([row[0] for row in decoded], symbols[0])
    np.testing.assert_array_equal([row[3] for row in decoded], symbols[2])
    assert all(row[1] is None for row in decoded)
    assert any(isinstance(row[2], ValueError) and "invalid under the given PMFs" in str(row[2]) for row in decoded)
    with pytest.raises(ValueError, match="expected 4 rows of PMFs, one per stream, got 3"):
        decode_each(decoders, pmfs[:, 0])
    with pytest.raises(ValueError, match="summing"):
        decode_each(decoders[:1], pmfs[:1, 0] - 1)


@pytest.mark.parametrize("num_codes", [2, 3, 512, 1000])
def test_round_trip_random_symbols_under_random_pmfs(num_codes):
    rng = np.random.default_rng(10 + num_codes)
    rows = np.concatenate([log_softmax_rows(rng, 150, num_codes, 4.0), peaked_rows(rng, 150, num_codes)])
    pmfs = quantize_pmf(rows[rng.permutation(len(rows))])
    code_both_ways(rng.integers(0, num_codes, len(pmfs)), pmfs)  # mostly improbable symbols
    code_both_ways(sample(rng, pmfs), pmfs)  # mostly probable ones


@pytest.mark.parametrize("length", [0, 1, 2, 5])
def test_round_trip_short_sequences(length):
    rng = np.random.default_rng(length)
    pmfs = quantize_pmf(log_softmax_rows(rng, length, 512, 3.0))
    data = code_both_ways(rng.integers(0, 512, length), pmfs)
    assert (len(data) == 0) == (length == 0)


def test_blocks_do_not_change_results(monkeypatch):
    """Long inputs are processed in blocks of rows; blocks of 3 rows must give what one block gives."""
    rng = np.random.default_rng(5)
    rows = log_softmax_rows(rng, 20, 512, 3.0)
    counts = quantize_pmf(rows)
    symbols = sample(rng, counts)
    data = encode_all(symbols, counts)
    monkeypatch.setattr(entropy, "_BLOCK_ENTRIES", 3 * 512)
    np.testing.assert_array_equal(quantize_pmf(rows), counts)
    assert encode_all(symbols, counts) == data
    np.testing.assert_array_equal(decode_all(data, counts), symbols)
    rows[10] = -np.inf
    with pytest.raises(ValueError, match="row 10 has no finite entry"):
        quantize_pmf(rows)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(0, 30), st.floats(0.0, 30.0), st.integers(0, 2**32 - 1))
def test_round_trip_any_distributions(num_codes, length, scale, seed):
    rng = np.random.default_rng(seed)
    pmfs = quantize_pmf((rng.normal(size=(length, num_codes)) * scale).astype(np.float32))
    code_both_ways(rng.integers(0, num_codes, length), pmfs)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=48).map(lambda data: data[: len(data) // 4 * 4]), st.integers(0, 2**32 - 1))
def test_garbage_decodes_to_valid_symbols_or_a_value_error(data, seed):
    rng = np.random.default_rng(seed)
    num_codes = int(rng.choice([2, 3, 512]))
    pmfs = quantize_pmf((rng.normal(size=(40, num_codes)) * rng.uniform(0, 30)).astype(np.float32))
    try:
        symbols = decode_all(data, pmfs)
    except ValueError as error:
        assert "invalid under the given PMFs" in str(error)
    else:
        assert symbols.shape == (40,) and symbols.min() >= 0 and symbols.max() < num_codes


def test_rate_is_close_to_the_entropy():
    """Symbols drawn from the model cost their information content, plus at most a few 32-bit words."""
    rng = np.random.default_rng(6)
    pmfs = quantize_pmf(log_softmax_rows(rng, 8000, 512, 2.5))
    symbols = sample(rng, pmfs)
    ideal_bits = information_content(symbols, pmfs)
    coded_bits = 8 * len(encode_all(symbols, pmfs))
    assert ideal_bits <= coded_bits <= ideal_bits * 1.001 + 64
    # and the information content is the entropy of the drawn distributions, up to sampling noise
    probs = pmfs / TOTAL
    entropy_bits = -(probs * np.log2(probs)).sum()
    assert abs(ideal_bits - entropy_bits) < 0.01 * entropy_bits


def test_the_coder_uses_exactly_the_given_counts():
    """Coding only symbols of count 1, 2 or 3 costs 24, 23 or 22.415 bits each. constriction takes floats;
    had it turned a count 1 into 2 (or 2 into 1), the total would be off by a bit per symbol."""
    rng = np.random.default_rng(7)
    pmfs = quantize_pmf((rng.normal(size=(6000, 512)) * 3).astype(np.float32))
    symbols = pmfs.argmin(axis=1)
    smallest = pmfs[np.arange(len(pmfs)), symbols]
    assert set(np.unique(smallest)) <= {1, 2, 3} and (smallest == 1).mean() > 0.5
    ideal_bits = np.sum(PRECISION - np.log2(smallest.astype(np.float64)))
    assert ideal_bits <= 8 * len(encode_all(symbols, pmfs)) <= ideal_bits + 64


def test_encode_all_output_is_pinned():
    pmfs = quantize_pmf(-(np.arange(8 * 5).reshape(8, 5) % 7).astype(np.float32))
    data = encode_all(np.array([0, 1, 2, 3, 4, 4, 3, 2]), pmfs)
    assert data.hex() == GOLDEN_ENCODE_HEX


def _mix(*values) -> np.ndarray:
    """A 64-bit integer hash (splitmix-style) of broadcast integer arrays: the same numbers on every platform
    and numpy version, unlike a random generator's stream."""
    x = np.uint64(0x9E3779B97F4A7C15)
    for value in values:
        x = (x ^ np.asarray(value, dtype=np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(31))
    return x


def test_a_realistic_chunk_at_512_codes_is_pinned():
    """A chunk like the bottom codes of one clip: 2048 codes of K = 512 at about 2.8 bits each. The
    log-probabilities lie on the 1/16-nat grid and the symbols come from integer arithmetic, so the PMFs and
    bytes are the same on every CPU: a change is a change of `quantize_pmf` or of constriction's coder."""
    n, num_codes = 2048, 512
    i, k = np.arange(n, dtype=np.uint64)[:, None], np.arange(num_codes, dtype=np.uint64)[None, :]
    steps = -(_mix(i, k, 1) % np.uint64(16 * 12)).astype(np.int64)  # (n, K) up to 12 nats below
    favoured = (_mix(i, k, 2) % np.uint64(16)) == 0  # about 32 likely codes a position, 2-7 nats above the rest
    steps += favoured * (16 * (2 + (_mix(i, k, 3) % np.uint64(6)).astype(np.int64)))
    pmfs = quantize_pmf((steps / 16).astype(np.float32))  # exact: multiples of 1/16
    uniform = (_mix(np.arange(n, dtype=np.uint64), 4) % np.uint64(TOTAL)).astype(np.int64)  # (n,)
    symbols = (np.cumsum(pmfs, axis=1) <= uniform[:, None]).sum(axis=1)  # drawn from the PMFs, exactly
    data = encode_all(symbols, pmfs)
    assert hashlib.sha256(pmfs.astype("<u4").tobytes()).hexdigest() == GOLDEN_CHUNK_PMFS_SHA256
    assert len(data) == GOLDEN_CHUNK_BYTES
    assert hashlib.sha256(data).hexdigest() == GOLDEN_CHUNK_SHA256
    np.testing.assert_array_equal(decode_all(data, pmfs), symbols)
    assert 2.5 < information_content(symbols, pmfs) / n < 3


def test_information_content_by_hand():
    pmfs = np.array([[TOTAL // 2, TOTAL // 4, TOTAL // 4], [1, TOTAL - 2, 1]], dtype=np.uint32)
    assert information_content(np.array([0, 1]), pmfs[:1].repeat(2, axis=0)) == pytest.approx(3.0)
    assert information_content(np.array([2]), pmfs[1:]) == pytest.approx(24.0)


@pytest.mark.parametrize(
    "symbols, pmfs, error, match",
    [
        (np.array([3]), np.full((1, 2), TOTAL // 2), ValueError, r"symbols in \[0, 2\)"),
        (np.array([-1]), np.full((1, 2), TOTAL // 2), ValueError, r"symbols in \[0, 2\)"),
        (np.array([0]), np.array([[TOTAL // 2, TOTAL // 2 - 1]]), ValueError, "summing to 2\\*\\*24"),
        (np.array([0]), np.array([[TOTAL, 0]]), ValueError, "counts >= 1"),
        (np.array([0]), np.full((1, 2), 0.5), TypeError, "integer counts"),
        (np.array([0.0]), np.full((1, 2), TOTAL // 2), TypeError, "integer symbols"),
        (np.array([0, 1]), np.full((1, 2), TOTAL // 2), ValueError, "expected symbols"),
    ],
)
def test_encode_refuses_bad_input(symbols, pmfs, error, match):
    with pytest.raises(error, match=match):
        encode_all(symbols, pmfs)


def test_sequential_coders_refuse_bad_input():
    pmf = np.full(4, TOTAL // 4)
    with pytest.raises(ValueError, match=r"symbols in \[0, 4\)"):
        SequentialEncoder().encode(4, pmf)
    with pytest.raises(ValueError, match="summing"):
        SequentialEncoder().encode(0, pmf - 1)
    with pytest.raises(ValueError, match="whole number of 32-bit words"):
        SequentialDecoder(b"\x00" * 5)
    with pytest.raises(ValueError, match="whole number of 32-bit words"):
        decode_all(b"\x00" * 3, pmf[None])
