"""Code stores: the integer codes of every clip, top and bottom, for training the priors.

A hierarchical VQ-VAE turns each clip into top and bottom code grids; they are extracted once and read many
times. Three modules, one job each:
- `store`: the on-disk format, an LMDB folder of named records (top, bottom, source) keyed by clip index,
  with the VQ-VAE's fingerprint and codebooks (`CodeStore`, `CodeStoreMeta`);
- `extract`: encoding a dataset into a store, resumable, on one process or sharded over several
  (`extract_codes`);
- `dataset`: a store as a torch Dataset for the priors (`CodeDataset`).
"""

from vqvid.data.codes.dataset import CodeDataset
from vqvid.data.codes.extract import DescribedClips, encode_shard, extract_codes, merge_shards, start_extraction
from vqvid.data.codes.store import (
    DEFAULT_MAP_SIZE,
    FORMAT_VERSION,
    MAX_NUM_CODES,
    STORAGE_DTYPE,
    Codebooks,
    CodeRecord,
    CodeStore,
    CodeStoreError,
    CodeStoreMeta,
)

__all__ = [
    "DEFAULT_MAP_SIZE",
    "FORMAT_VERSION",
    "MAX_NUM_CODES",
    "STORAGE_DTYPE",
    "CodeDataset",
    "CodeRecord",
    "CodeStore",
    "CodeStoreError",
    "CodeStoreMeta",
    "Codebooks",
    "DescribedClips",
    "encode_shard",
    "extract_codes",
    "merge_shards",
    "start_extraction",
]
