"""Tests of the code store: round trips, metadata, refusals, map growth, workers, resuming a killed run."""

import importlib.util
import io
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vqvid.data.codes import (
    CodeDataset,
    CodeRecord,
    CodeStore,
    CodeStoreError,
    CodeStoreMeta,
    extract_codes,
)

META = CodeStoreMeta(
    fingerprint="vqvae-aaaa",
    top_shape=(1, 2, 3),
    bottom_shape=(2, 4, 6),
    num_codes=512,
    source="synthetic clips, seed 0",
)


def random_codes(rng: np.random.Generator, n: int, meta: CodeStoreMeta = META) -> tuple[np.ndarray, ...]:
    top = rng.integers(0, meta.num_codes, (n, *meta.top_shape))  # (N, T', H', W') int64
    bottom = rng.integers(0, meta.num_codes, (n, *meta.bottom_shape))
    return top, bottom


def tagged_store(path: Path, n: int) -> None:
    """A store whose clip k has code k first in both levels, so whatever a reader returns names its clip."""
    rng = np.random.default_rng(1)
    top, bottom = random_codes(rng, n)
    top[:, 0, 0, 0] = np.arange(n)
    bottom[:, 0, 0, 0] = np.arange(n)
    with CodeStore.create_or_open(path, META) as store:
        store.append(top, bottom, [f"clip {k}" for k in range(n)], list(range(n)))


@pytest.mark.parametrize("num_codes", [512, 65536])
def test_round_trip_returns_identical_codes(tmp_path, num_codes):
    meta = CodeStoreMeta("vqvae-aaaa", (1, 2, 3), (2, 4, 6), num_codes, "synthetic")
    rng = np.random.default_rng(0)
    top, bottom = random_codes(rng, 5, meta)
    top[0, 0, 0, 0], bottom[1, -1, -1, -1] = num_codes - 1, num_codes - 1  # the largest code must survive
    top[2, 0, 0, 0] = 0
    sources = ["a.mp4 frames 0-15", "a.mp4 frames 16-31", "dir/é ü.mp4", "", "synthetic seed 4"]
    with CodeStore.create_or_open(tmp_path / "codes", meta) as store:
        store.append(top[:2], torch.from_numpy(bottom[:2]), sources[:2], [0, 1])
        store.append(torch.from_numpy(top[2:]).int(), bottom[2:].astype(np.int32), sources[2:], [2, 3, 4])

    with CodeStore.open(tmp_path / "codes") as store:
        assert len(store) == 5 and store.keys() == [0, 1, 2, 3, 4]
        for i in range(5):
            record = store.get(i)
            assert isinstance(record, CodeRecord)
            assert record.top.dtype == torch.int64 and record.bottom.dtype == torch.int64
            assert record.top.shape == (1, 2, 3) and record.bottom.shape == (2, 4, 6)
            assert torch.equal(record.top, torch.from_numpy(top[i]))
            assert torch.equal(record.bottom, torch.from_numpy(bottom[i]))
            assert record.source == sources[i]


def test_records_are_npy_arrays_of_uint16_readable_without_pickle(tmp_path):
    top, bottom = random_codes(np.random.default_rng(0), 1)
    with CodeStore.create_or_open(tmp_path, META) as store:
        store.append(top, bottom, ["clip"], [3])
    env = lmdb.open(str(tmp_path), readonly=True, lock=False, max_dbs=2)
    records = env.open_db(b"records", create=False)
    with env.begin() as txn:
        value = txn.get((3).to_bytes(8, "big"), db=records)
    env.close()
    buffer = io.BytesIO(value)
    stored_top = np.load(buffer, allow_pickle=False)
    stored_bottom = np.load(buffer, allow_pickle=False)
    assert stored_top.dtype == np.uint16 and stored_bottom.dtype == np.uint16
    np.testing.assert_array_equal(stored_top, top[0])
    np.testing.assert_array_equal(stored_bottom, bottom[0])
    assert buffer.read() == b"clip"


def test_positions_follow_clip_order_when_clips_are_missing(tmp_path):
    top, bottom = random_codes(np.random.default_rng(0), 3)
    with CodeStore.create_or_open(tmp_path, META) as store:
        store.append(top[:2], bottom[:2], ["seven", "two"], [7, 2])
        store.append(top[2:], bottom[2:], ["five"], [5])
        assert store.keys() == [2, 5, 7]
        assert [store.get(i).source for i in range(3)] == ["two", "five", "seven"]
        assert torch.equal(store.get(0).top, torch.from_numpy(top[1]))
        assert 5 in store and 3 not in store and -1 not in store
        with pytest.raises(IndexError):
            store.get(3)


def test_metadata_round_trips_and_reopening_appends(tmp_path):
    assert CodeStoreMeta.from_json(META.to_json()) == META
    top, bottom = random_codes(np.random.default_rng(0), 2)
    with CodeStore.create_or_open(tmp_path, META) as store:
        store.append(top[:1], bottom[:1], ["first"], [0])
    with CodeStore.create_or_open(tmp_path, META) as store:
        store.append(top[1:], bottom[1:], ["second"], [1])
    with CodeStore.open(tmp_path) as store:
        assert store.meta == META
        assert store.meta.top_shape == (1, 2, 3) and isinstance(store.meta.bottom_shape, tuple)
        assert [store.get(i).source for i in range(len(store))] == ["first", "second"]
    assert CodeDataset(tmp_path, "top").meta == META


@pytest.mark.parametrize(
    "change",
    [
        {"fingerprint": "vqvae-bbbb"},
        {"top_shape": (1, 2, 4)},
        {"bottom_shape": (2, 4, 8)},
        {"num_codes": 1024},
        {"source": "other clips"},
    ],
)
def test_reopening_with_another_vqvae_or_data_is_refused(tmp_path, change):
    top, bottom = random_codes(np.random.default_rng(0), 1)
    with CodeStore.create_or_open(tmp_path, META) as store:
        store.append(top, bottom, ["clip"], [0])
    other = CodeStoreMeta(**{**META.__dict__, **change})
    with pytest.raises(CodeStoreError) as refusal:
        CodeStore.create_or_open(tmp_path, other)
    assert "vqvae-aaaa" in str(refusal.value) and other.fingerprint in str(refusal.value)
    assert str(tmp_path) in str(refusal.value)
    with CodeStore.open(tmp_path) as store:
        assert store.meta == META and len(store) == 1


def test_check_compatible_names_both_fingerprints(tmp_path):
    tagged_store(tmp_path, 1)
    dataset = CodeDataset(tmp_path, "bottom")
    dataset.check_compatible("vqvae-aaaa")
    with pytest.raises(CodeStoreError, match="vqvae-aaaa.*vqvae-ffff"):
        dataset.check_compatible("vqvae-ffff")


def test_invalid_meta_is_rejected():
    with pytest.raises(ValueError, match="num_codes"):
        CodeStoreMeta("f", (1, 2, 3), (2, 4, 6), 70000, "s")
    with pytest.raises(ValueError, match="top_shape"):
        CodeStoreMeta("f", (1, 2), (2, 4, 6), 512, "s")
    with pytest.raises(ValueError, match="fingerprint"):
        CodeStoreMeta("", (1, 2, 3), (2, 4, 6), 512, "s")


def test_append_rejects_bad_codes_and_writes_nothing_of_a_bad_batch(tmp_path):
    top, bottom = random_codes(np.random.default_rng(0), 2)
    with CodeStore.create_or_open(tmp_path, META) as store:
        store.append(top[:1], bottom[:1], ["zero"], [0])
        with pytest.raises(CodeStoreError, match="shape"):
            store.append(top[:, :, :1], bottom, ["a", "b"], [1, 2])
        too_big = top.copy()
        too_big[1, 0, 0, 0] = 512
        with pytest.raises(ValueError, match=r"\[0, 512\)"):
            store.append(too_big, bottom, ["a", "b"], [1, 2])
        with pytest.raises(ValueError, match="distinct"):
            store.append(top, bottom, ["a", "b"], [1, 1])
        with pytest.raises(ValueError, match="as many"):
            store.append(top, bottom, ["a"], [1, 2])
        # Clip 1 is new and clip 0 is not: the batch must fail as a whole.
        with pytest.raises(CodeStoreError, match="clip 0"):
            store.append(top, bottom, ["one", "zero again"], [1, 0])
        assert store.keys() == [0] and store.get(0).source == "zero"
    with CodeStore.open(tmp_path) as store, pytest.raises(CodeStoreError, match="read-only"):
        store.append(top, bottom, ["a", "b"], [1, 2])


def test_map_grows_beyond_a_tiny_initial_size(tmp_path):
    meta = CodeStoreMeta("vqvae-aaaa", (2, 8, 8), (4, 16, 16), 512, "synthetic")
    initial = 1 << 15
    rng = np.random.default_rng(0)
    written = []
    with CodeStore.create_or_open(tmp_path, meta, map_size=initial) as store:
        for batch in range(6):
            top, bottom = random_codes(rng, 8, meta)  # 8 × ~2.4 kB: more than the whole map in one batch
            store.append(top, bottom, ["clip"] * 8, range(8 * batch, 8 * batch + 8))
            written += list(zip(top, bottom, strict=True))
    assert (tmp_path / "data.mdb").stat().st_size > 4 * initial  # an LMDB file never outgrows its map
    with CodeStore.open(tmp_path) as store:
        assert len(store) == len(written)
        for i, (top, bottom) in enumerate(written):
            assert torch.equal(store.get(i).top, torch.from_numpy(top))
            assert torch.equal(store.get(i).bottom, torch.from_numpy(bottom))


def test_missing_or_foreign_or_damaged_stores_fail_naming_the_path(tmp_path):
    missing = tmp_path / "missing"
    for open_store in (CodeStore.open, lambda path: CodeDataset(path, "top")):
        with pytest.raises(CodeStoreError, match="missing"):
            open_store(missing)

    not_a_store = tmp_path / "videos"
    not_a_store.mkdir()
    (not_a_store / "clip.mp4").write_bytes(b"video")
    with pytest.raises(CodeStoreError, match="videos"):
        CodeStore.open(not_a_store)
    with pytest.raises(CodeStoreError, match="videos"):
        CodeStore.create_or_open(not_a_store, META)
    assert sorted(os.listdir(not_a_store)) == ["clip.mp4"]
    with pytest.raises(CodeStoreError, match="clip.mp4"):
        CodeStore.create_or_open(not_a_store / "clip.mp4", META)

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(os.urandom(3 * 4096))
    for open_store in (CodeStore.open, lambda path: CodeStore.create_or_open(path, META)):
        with pytest.raises(CodeStoreError, match="garbage"):
            open_store(garbage)

    foreign = tmp_path / "foreign"
    env = lmdb.open(str(foreign), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"image-0", b"pixels")
    env.close()
    for open_store in (CodeStore.open, lambda path: CodeStore.create_or_open(path, META)):
        with pytest.raises(CodeStoreError, match="foreign.*not a code store"):
            open_store(foreign)


def test_damaged_record_and_metadata_fail_naming_the_path(tmp_path):
    tagged_store(tmp_path, 2)
    env = lmdb.open(str(tmp_path), max_dbs=2)
    records = env.open_db(b"records")
    with env.begin(write=True) as txn:
        txn.put((1).to_bytes(8, "big"), b"\x93NUMPY truncated", db=records)
    env.close()
    with CodeStore.open(tmp_path) as store:
        assert store.get(0).source == "clip 0"
        with pytest.raises(CodeStoreError, match=f"{tmp_path}.*clip 1 is damaged"):
            store.get(1)

    env = lmdb.open(str(tmp_path), max_dbs=2)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"meta", b"{not json", db=meta)
    env.close()
    with pytest.raises(CodeStoreError, match=f"{tmp_path}.*metadata"):
        CodeStore.open(tmp_path)

    env = lmdb.open(str(tmp_path), max_dbs=2)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"meta", META.to_json().replace('"version": 1', '"version": 2').encode(), db=meta)
    env.close()
    with pytest.raises(CodeStoreError, match=f"{tmp_path}.*version 2"):
        CodeStore.open(tmp_path)


def test_code_dataset_levels(tmp_path):
    tagged_store(tmp_path, 3)
    top_level, bottom_level = CodeDataset(tmp_path, "top"), CodeDataset(tmp_path, "bottom")
    assert len(top_level) == len(bottom_level) == 3
    with CodeStore.open(tmp_path) as store:
        for i in range(3):
            record = store.get(i)
            assert torch.equal(top_level[i], record.top)
            bottom, condition = bottom_level[i]
            assert torch.equal(bottom, record.bottom) and torch.equal(condition, record.top)
            assert bottom.dtype == torch.int64 and bottom.shape == (2, 4, 6)
    # All at once, as one batch, in clip order
    assert torch.equal(top_level.stacked(), torch.stack([top_level[i] for i in range(3)]))
    bottoms, tops = bottom_level.stacked()
    assert torch.equal(bottoms, torch.stack([bottom_level[i][0] for i in range(3)]))
    assert torch.equal(tops, top_level.stacked())
    with pytest.raises(ValueError, match="level"):
        CodeDataset(tmp_path, "middle")


def test_readers_in_one_process_share_the_store_and_block_writers(tmp_path):
    tagged_store(tmp_path, 4)
    top_level, bottom_level = CodeDataset(tmp_path, "top"), CodeDataset(tmp_path, "bottom")
    store = CodeStore.open(tmp_path)
    for i in range(4):  # interleaved reads through three readers of the same files
        bottom, top = bottom_level[i]
        assert int(top_level[i][0, 0, 0]) == int(bottom[0, 0, 0]) == int(store.get(i).top[0, 0, 0]) == i
        assert torch.equal(top, top_level[i])
    store.close()
    with pytest.raises(CodeStoreError, match="closed"):
        len(store)
    assert int(top_level[3][0, 0, 0]) == 3  # closing one reader leaves the others reading
    with pytest.raises(CodeStoreError, match="open for reading"):
        CodeStore.create_or_open(tmp_path, META)
    del top_level, bottom_level
    with CodeStore.create_or_open(tmp_path, META) as writer:
        assert len(writer) == 4


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_loader_workers_read_every_record_exactly_once(tmp_path, context):
    n = 13
    tagged_store(tmp_path, n)
    dataset = CodeDataset(tmp_path, "bottom")
    dataset[0]  # the main process opens the store before forking, so each worker must replace its copy
    loader = DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context=context)
    seen = []
    with CodeStore.open(tmp_path) as store:
        for bottom, top in loader:  # (B, 2, 4, 6), (B, 1, 2, 3)
            for b in range(len(bottom)):
                clip = int(top[b, 0, 0, 0])
                record = store.get(clip)
                assert torch.equal(top[b], record.top) and torch.equal(bottom[b], record.bottom)
                seen.append(clip)
    assert sorted(seen) == list(range(n))


# The clips, encoder and entry point of an extraction that the resume test kills; the test imports the same
# file, so the interrupted, resumed and reference runs all encode exactly the same clips the same way.
EXTRACTION_JOB = textwrap.dedent(
    """
    import sys
    import time

    import torch
    import torch.nn.functional as F

    from vqvid.data.codes import CodeStoreMeta, extract_codes

    META = CodeStoreMeta("vqvae-dummy", (1, 2, 2), (2, 4, 4), 64, "dummy clips 0-23")


    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 24

        def __getitem__(self, index):
            # Constant over channels and over each 4×8×8 block, on a grid of 1/16: every mean `quantise` takes
            # is exact, so the codes do not depend on how clips are batched or on the CPU.
            generator = torch.Generator().manual_seed(index)
            blocks = torch.randint(-16, 16, (1, 1, 2, 2), generator=generator) / 16  # (1, T/4, H/8, W/8)
            return blocks.repeat_interleave(4, 1).repeat_interleave(8, 2).repeat_interleave(8, 3).expand(3, -1, -1, -1)

        def describe(self, index):
            return f"dummy clip {index}"


    def quantise(x, kernel):
        means = F.avg_pool3d(x.mean(dim=1, keepdim=True), kernel).squeeze(1)  # (B, T', H', W') in [-1, 1]
        return ((means * 4 + 1) / 2 * META.num_codes).long().clamp(0, META.num_codes - 1)


    def slow_encode(clips, delay):
        print("encoding", flush=True)
        time.sleep(delay)
        return quantise(clips, (4, 8, 8)), quantise(clips, (2, 4, 4))


    def encode_until(clips, calls, hang_at):
        calls.append(len(clips))
        codes = slow_encode(clips, 0.0)
        if len(calls) == hang_at:
            time.sleep(3600)  # inside batch `hang_at`, whatever the machine's speed: the test kills it here
        return codes


    if __name__ == "__main__":
        calls = []
        extract_codes(lambda clips: encode_until(clips, calls, int(sys.argv[2])), Clips(), sys.argv[1], META,
                      batch_size=2, progress=False)
    """
)


def load_job(tmp_path: Path):
    script = tmp_path / "extraction_job.py"
    script.write_text(EXTRACTION_JOB)
    spec = importlib.util.spec_from_file_location("extraction_job", script)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return script, job


def store_contents(path: Path) -> list[tuple[int, list, list, str]]:
    with CodeStore.open(path) as store:
        return [
            (key, store.get(i).top.tolist(), store.get(i).bottom.tolist(), store.get(i).source)
            for i, key in enumerate(store.keys())
        ]


def test_extract_codes_stores_the_encoder_output_of_every_clip(tmp_path):
    _, job = load_job(tmp_path)
    clips = job.Clips()
    assert extract_codes(lambda x: job.slow_encode(x, 0.0), clips, tmp_path / "codes", job.META, 5,
                         device="cpu", progress=False) == 24
    contents = store_contents(tmp_path / "codes")
    assert [key for key, *_ in contents] == list(range(24))
    for key, top, bottom, source in contents:
        clip = clips[key][None]  # (1, 3, T, H, W)
        assert top == job.quantise(clip, (4, 8, 8))[0].tolist()
        assert bottom == job.quantise(clip, (2, 4, 4))[0].tolist()
        assert source == f"dummy clip {key}"
    assert len({tuple(np.ravel(top)) for _, top, _, _ in contents}) > 1  # the dummy codes tell clips apart

    assert extract_codes(lambda x: pytest.fail("nothing is left to encode"), clips, tmp_path / "codes",
                         job.META, progress=False) == 0
    assert store_contents(tmp_path / "codes") == contents


def test_extract_codes_refuses_a_store_of_other_data(tmp_path):
    _, job = load_job(tmp_path)
    with CodeStore.create_or_open(tmp_path / "codes", job.META) as store:
        store.append(np.zeros((1, 1, 2, 2), int), np.zeros((1, 2, 4, 4), int), ["clip 99"], [99])
    with pytest.raises(CodeStoreError, match="clip 99"):
        extract_codes(lambda x: job.slow_encode(x, 0.0), job.Clips(), tmp_path / "codes", job.META,
                      progress=False)


def wait_for_lines(process: subprocess.Popen, count: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    for _ in range(count):
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = process.stdout.readline() if ready else b""
        if not line.startswith(b"encoding"):
            process.kill()
            raise AssertionError(f"the extraction stopped early: {process.stderr.read().decode()}")


def test_extraction_killed_midway_resumes_to_the_uninterrupted_result(tmp_path):
    script, job = load_job(tmp_path)
    extract_codes(lambda x: job.slow_encode(x, 0.0), job.Clips(), tmp_path / "reference", job.META,
                  batch_size=2, progress=False)

    interrupted = tmp_path / "interrupted"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                                os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(interrupted), "5"],  # it hangs in the 5th call to the encoder
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, bufsize=0,  # select sees every line
    )
    wait_for_lines(process, 5, deadline_s=120)  # the 5th call starts once 4 batches are committed
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    partial = store_contents(interrupted)
    assert len(partial) == 8  # the 4 whole batches before the kill, nothing of the 5th
    assert partial == store_contents(tmp_path / "reference")[: len(partial)]

    encoded = []

    def counting_encode(clips):
        encoded.append(len(clips))
        return job.slow_encode(clips, 0.0)

    assert extract_codes(counting_encode, job.Clips(), interrupted, job.META, batch_size=2,
                         progress=False) == 24 - len(partial)
    assert sum(encoded) == 24 - len(partial)  # clips already stored are not encoded again
    assert store_contents(interrupted) == store_contents(tmp_path / "reference")


def test_codebooks_round_trip_and_are_written_once(tmp_path):
    rng = np.random.default_rng(0)
    top, bottom = rng.normal(size=(2, 512, 4)).astype(np.float32)
    with CodeStore.create_or_open(tmp_path / "codes", META) as store:
        assert store.codebooks() is None  # a store written without them says so
        store.put_codebooks(torch.from_numpy(top), bottom)
        store.put_codebooks(top + 1, bottom + 1)  # already held: the first ones stay
    with CodeStore.open(tmp_path / "codes") as store:
        codebooks = store.codebooks()
    np.testing.assert_array_equal(codebooks.top, top)
    np.testing.assert_array_equal(codebooks.bottom, bottom)
    np.testing.assert_array_equal(CodeDataset(tmp_path / "codes", "bottom").codebooks().bottom, bottom)


@pytest.mark.parametrize("top, message", [
    (np.zeros((511, 4), np.float32), r"top codebook must be a float \(512, D\) array"),
    (np.zeros((512,), np.float32), r"top codebook must be a float \(512, D\) array"),
    (np.zeros((512, 4), np.int64), r"top codebook must be a float \(512, D\) array"),
    (np.full((512, 4), np.nan, np.float32), "top codebook holds non-finite values"),
])
def test_bad_codebooks_are_refused_and_nothing_is_written(tmp_path, top, message):
    with CodeStore.create_or_open(tmp_path / "codes", META) as store:
        with pytest.raises(CodeStoreError, match=message):
            store.put_codebooks(top, np.zeros((512, 4), np.float32))
        assert store.codebooks() is None


def test_damaged_codebooks_fail_naming_the_path(tmp_path):
    path = tmp_path / "codes"
    with CodeStore.create_or_open(path, META):
        pass
    env = lmdb.open(str(path), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"codebooks", b"\x93NUMPY garbage", db=env.open_db(b"meta", txn=txn))
    env.close()
    with CodeStore.open(path) as store, pytest.raises(CodeStoreError, match=f"{path}.*codebooks are damaged"):
        store.codebooks()


def test_extract_codes_stores_the_codebooks_it_is_given(tmp_path):
    _, job = load_job(tmp_path)
    top, bottom = torch.randn(2, job.META.num_codes, 3)
    extract_codes(lambda x: job.slow_encode(x, 0.0), job.Clips(), tmp_path / "codes", job.META, 8,
                  progress=False, codebooks=(top, bottom))
    with CodeStore.open(tmp_path / "codes") as store:
        codebooks = store.codebooks()
    np.testing.assert_array_equal(codebooks.top, top.numpy())
    np.testing.assert_array_equal(codebooks.bottom, bottom.numpy())


def test_the_store_format_stands_apart_from_the_dataset_and_the_extraction():
    # The on-disk format is read by the dataset and written by the extraction; it depends on neither, nor on
    # data loading, so that a change to either cannot change what a store holds.
    import ast

    import vqvid.data.codes as package

    folder = Path(package.__file__).parent

    def imported(module: str) -> set[str]:
        tree = ast.parse((folder / f"{module}.py").read_text())
        names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        return names

    store, dataset, extract = imported("store"), imported("dataset"), imported("extract")
    assert not store & {"vqvid.data.codes.dataset", "vqvid.data.codes.extract", "torch.utils.data", "tqdm.auto"}
    assert "vqvid.data.codes.store" in dataset and "vqvid.data.codes.extract" not in dataset
    assert "vqvid.data.codes.store" in extract and "vqvid.data.codes.dataset" not in extract


def test_sharded_extraction_writes_the_records_of_one_process(tmp_path):
    from vqvid.data.codes import encode_shard, merge_shards, start_extraction

    _, job = load_job(tmp_path)
    encode = lambda x: job.slow_encode(x, 0.0)
    extract_codes(encode, job.Clips(), tmp_path / "reference", job.META, batch_size=2, progress=False)

    path = tmp_path / "sharded"
    assert start_extraction(path, job.META, 24) == 0
    written = [encode_shard(encode, job.Clips(), path, job.META, rank, 3, batch_size=2, progress=False)
               for rank in range(3)]
    assert written == [8, 8, 8]  # clip by clip over the ranks: equal shares
    with CodeStore.open(path / "shards" / "rank-00001") as shard:
        assert shard.keys() == list(range(1, 24, 3))
    assert merge_shards(path) == 24
    assert not (path / "shards").exists()
    assert store_contents(path) == store_contents(tmp_path / "reference")


def test_an_interrupted_sharded_extraction_resumes_with_another_number_of_processes(tmp_path):
    from vqvid.data.codes import encode_shard, start_extraction

    _, job = load_job(tmp_path)
    encode = lambda x: job.slow_encode(x, 0.0)
    extract_codes(encode, job.Clips(), tmp_path / "reference", job.META, batch_size=2, progress=False)

    path = tmp_path / "interrupted"
    start_extraction(path, job.META, 24)
    with CodeStore.create_or_open(path, job.META) as store:  # a first, single-process run got 4 clips in
        store.append(*encode(torch.stack([job.Clips()[i] for i in range(4)])), ["dummy clip 0", "dummy clip 1",
                     "dummy clip 2", "dummy clip 3"], [0, 1, 2, 3])
    # then a 2-process run was killed: rank 1 finished its share, rank 0 had begun its shard, nothing merged
    assert encode_shard(encode, job.Clips(), path, job.META, 1, 2, batch_size=2, progress=False) == 10
    (path / "shards" / "rank-00000").mkdir()  # rank 0 killed before its shard's first write
    with CodeStore.create_or_open(path, job.META):
        pass

    # resumed by one process: the shard's clips are merged, not encoded again
    encoded = []

    def counting_encode(clips):
        encoded.append(len(clips))
        return encode(clips)

    assert extract_codes(counting_encode, job.Clips(), path, job.META, batch_size=2, progress=False) == 10
    assert sum(encoded) == 10
    assert not (path / "shards").exists()
    assert store_contents(path) == store_contents(tmp_path / "reference")


def test_a_shard_of_other_codes_is_refused(tmp_path):
    from dataclasses import replace

    from vqvid.data.codes import start_extraction

    _, job = load_job(tmp_path)
    path = tmp_path / "codes"
    start_extraction(path, job.META, 24)
    with CodeStore.create_or_open(path / "shards" / "rank-00000", replace(job.META, fingerprint="vqvae-other")):
        pass
    with pytest.raises(CodeStoreError, match="refusing to merge .*rank-00000.*vqvae-other"):
        extract_codes(lambda x: job.slow_encode(x, 0.0), job.Clips(), path, job.META, progress=False)


@pytest.mark.parametrize("where", ["record", "codebooks"])
def test_a_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path, where):
    """A record whose `.npy` header claims 10^12 codes is refused from its header: nothing of that size is
    allocated (numpy would allocate what the header says before reading)."""
    tagged_store(tmp_path, 1)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<u2", "fortran_order": False, "shape": (10**12,)})
    value = header.getvalue() + b"\0" * 64  # the header (magic included), then far fewer bytes than it claims
    env = lmdb.open(str(tmp_path), max_dbs=2)
    with env.begin(write=True) as txn:
        if where == "record":
            txn.put((0).to_bytes(8, "big"), value, db=env.open_db(b"records", txn=txn))
        else:
            txn.put(b"codebooks", value, db=env.open_db(b"meta", txn=txn))
    env.close()
    with CodeStore.open(tmp_path) as store, pytest.raises(CodeStoreError, match=r"declares .*2,000,000,000,000 "
                                                                                r"bytes"):
        store.get(0) if where == "record" else store.codebooks()
