"""`vqvid extract` on one process and on several (as torchrun starts them), writing one store."""

import os
import socket
import subprocess
import sys

from tests.tiny import tiny_checkpoints
from vqvid.data.codes import CodeStore


def _store(path):
    with CodeStore.open(path) as store:
        records = [store.get(i) for i in range(len(store))]
        return store.meta, store.keys(), [(r.top.tolist(), r.bottom.tolist(), r.source) for r in records]


def test_two_processes_write_one_store_with_the_records_of_one_process(tmp_path):
    vqvae = tiny_checkpoints(tmp_path)["vqvae"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # One clip per batch and one thread in every process: each clip then goes through the same computation in
    # both runs, so that their codes may be compared exactly.
    common = ["--vqvae", str(vqvae), "--data", "synthetic:5", "--batch-size", "1", "--no-progress"]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    runs = [subprocess.Popen([sys.executable, "-m", "vqvid", "extract", *common, "--out", str(tmp_path / "one")],
                             env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    runs += [subprocess.Popen([sys.executable, "-m", "vqvid", "extract", *common, "--out", str(tmp_path / "two")],
                              env={**environ, **launcher, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
    assert "2 processes" in outputs[1][0] and outputs[2][0] == ""  # rank 0 alone reports

    meta, keys, records = _store(tmp_path / "two")
    assert (meta, keys, records) == _store(tmp_path / "one")
    assert keys == list(range(len(keys))) and len(keys) >= 4
    assert not (tmp_path / "two" / "shards").exists()
