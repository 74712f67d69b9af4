"""The code store's on-disk format: the integer codes of every clip, top and bottom, in one LMDB database.

A hierarchical VQ-VAE (VQ-VAE-2, Razavi et al. 2019, arXiv 1906.00446) turns each clip 3×T×H×W into top
codes T/4×H/8×W/8 and bottom codes T/2×H/4×W/4, integers in [0, num_codes). `CodeStore` writes and reads them
as named records (top, bottom, source) keyed by the clip's index in the source dataset.

On disk a store is an LMDB folder with two named databases:
- ``meta``: one JSON document (`CodeStoreMeta`): which VQ-VAE made the codes, their shapes, the data; and,
  under a second key, the VQ-VAE's top and bottom codebooks (two ``.npy`` arrays, (K, D) float32), which say
  what the codes mean: the priors start their code embeddings from them.
- ``records``: key = clip index as 8 big-endian bytes (so key order is clip order); value = the top array and
  the bottom array in ``.npy`` format (explicit dtype and shape, written and read with
  ``allow_pickle=False``), then the UTF-8 description of the clip's source. Nothing is ever pickled.

Codes are stored as uint16 and returned as int64 tensors.
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import struct
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import lmdb
import numpy as np
import torch
from torch import Tensor

FORMAT_VERSION = 1
STORAGE_DTYPE = np.dtype(np.uint16)  # codes are non-negative; codebooks hold hundreds to thousands of entries
MAX_NUM_CODES = int(np.iinfo(STORAGE_DTYPE).max) + 1
DEFAULT_MAP_SIZE = 1 << 26  # 64 MiB to start; the map doubles whenever a write finds it full

_META_DB = b"meta"
_RECORDS_DB = b"records"
_META_KEY = b"meta"
_CODEBOOKS_KEY = b"codebooks"
_KEY = struct.Struct(">Q")  # big-endian, so LMDB's byte order of keys is the numeric order of clip indices


class CodeStoreError(ValueError):
    """A code store that is missing, damaged, not a code store, or holds codes of another VQ-VAE."""


@dataclass(frozen=True)
class CodeStoreMeta:
    """What a code store holds; written once when the store is created and checked on every reopening."""

    fingerprint: str  # hash of the VQ-VAE that made the codes: codes of two VQ-VAEs must never be mixed
    top_shape: tuple[int, int, int]  # (T/4, H/8, W/8) of one clip; every record has exactly this shape
    bottom_shape: tuple[int, int, int]  # (T/2, H/4, W/4) of one clip
    num_codes: int  # codebook size: every code lies in [0, num_codes); the priors predict that many classes
    source: str  # the data the codes describe, so a resumed extraction cannot silently switch data sets
    version: int = FORMAT_VERSION  # on-disk layout; a reader refuses versions it does not know

    def __post_init__(self) -> None:
        # JSON gives lists back; the dataclass promises tuples so that two metas compare equal.
        object.__setattr__(self, "top_shape", _shape3("top_shape", self.top_shape))
        object.__setattr__(self, "bottom_shape", _shape3("bottom_shape", self.bottom_shape))
        if not isinstance(self.fingerprint, str) or not self.fingerprint:
            raise ValueError(f"CodeStoreMeta.fingerprint must be a non-empty str, got {self.fingerprint!r}")
        if not isinstance(self.source, str):
            raise ValueError(f"CodeStoreMeta.source must be a string, got {self.source!r}")
        if not isinstance(self.num_codes, int) or not 1 <= self.num_codes <= MAX_NUM_CODES:
            raise ValueError(
                f"CodeStoreMeta.num_codes must be an integer in [1, {MAX_NUM_CODES}] (codes are stored as "
                f"{STORAGE_DTYPE}), got {self.num_codes!r}"
            )
        if self.version != FORMAT_VERSION:
            raise ValueError(
                f"code store format version {self.version!r} is not the one vqvid reads ({FORMAT_VERSION})"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CodeStoreMeta:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError(f"expected a JSON object, got {type(fields).__name__}")
        return cls(**fields)


def _shape3(name: str, shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(operator.index(d) for d in shape)  # numpy and torch sizes are welcome, floats are not
    except TypeError:
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise ValueError(f"CodeStoreMeta.{name} must be three positive integers (T', H', W'), got {shape!r}")
    return dims  # type: ignore[return-value]


class CodeRecord(NamedTuple):
    """The codes of one clip."""

    top: Tensor  # (T/4, H/8, W/8) int64 in [0, num_codes)
    bottom: Tensor  # (T/2, H/4, W/4) int64 in [0, num_codes)
    source: str  # where the clip came from, as the dataset's `describe` said


class Codebooks(NamedTuple):
    """The codebooks of the VQ-VAE that made a store's codes: code i of a level stands for row i."""

    top: np.ndarray  # (K, D) float32
    bottom: np.ndarray  # (K, D) float32


class CodeStore:
    """An LMDB folder of `CodeRecord`s keyed by clip index, plus its `CodeStoreMeta`.

    Open it with `CodeStore.create_or_open` to write or `CodeStore.open` to read. Positions ``0 .. len - 1``
    (for `get`) follow clip order; `keys()` maps positions to clip indices. A read-only store takes no LMDB
    lock, so it must not be read while another process writes to it. LMDB allows one environment per file
    and process: the read-only stores of one folder in one process share theirs, and a folder cannot be
    opened for writing while this process reads it.
    """

    def __init__(self, path: Path, env: lmdb.Environment, meta: CodeStoreMeta, writable: bool) -> None:
        # Use create_or_open / open: they validate the folder before handing out a store.
        self.path = path
        self.meta = meta
        self.writable = writable
        self._env: lmdb.Environment | None = env
        self._records_db = env.open_db(_RECORDS_DB, create=False)
        self._keys: np.ndarray | None = None  # clip index of each position, read on first positional access

    @classmethod
    def create_or_open(
        cls, path: str | os.PathLike, meta: CodeStoreMeta, map_size: int = DEFAULT_MAP_SIZE
    ) -> CodeStore:
        """Open the store at `path` for appending, creating it with `meta` if the folder is new or empty.

        An existing store must hold codes of the same VQ-VAE (fingerprint, shapes, codebook size) and the same
        data (`meta.source`); otherwise `CodeStoreError` names both.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise CodeStoreError(f"{path} is a file; a code store is a folder (give a new or empty folder)")
        if path.is_dir() and any(path.iterdir()) and not (path / "data.mdb").is_file():
            raise CodeStoreError(
                f"{path} is not a code store (no data.mdb) and is not empty; give a new or empty folder"
            )
        if _live_reader(path) is not None:
            raise CodeStoreError(
                f"{path} is open for reading in this process (CodeStore.open or CodeDataset); close those "
                "readers before writing to it"
            )
        path.mkdir(parents=True, exist_ok=True)
        env = _open_env(path, readonly=False, map_size=map_size)
        try:
            stored = _init_or_read_meta(path, env, meta)
        except BaseException:
            env.close()
            raise
        if stored != meta:
            env.close()
            raise CodeStoreError(_mismatch_message(path, stored, meta))
        return cls(path, env, stored, writable=True)

    @classmethod
    def open(cls, path: str | os.PathLike) -> CodeStore:
        """Open an existing store read-only (no lock: nothing may write to it meanwhile)."""
        path = Path(path)
        if not path.exists():
            raise CodeStoreError(f"no code store at {path}: the folder does not exist")
        if not (path / "data.mdb").is_file():
            raise CodeStoreError(f"{path} is not a code store: expected a folder holding data.mdb")
        env = _shared_reader(path)
        with env.begin() as txn:
            meta = _read_meta(path, env, txn)
        return cls(path, env, meta, writable=False)

    def close(self) -> None:
        """Close a writer's environment; a reader lets go of its shared one, closed with its last reader."""
        if self.writable and self._env is not None:
            self._env.close()
        self._env = None

    def _begin(self, write: bool = False) -> lmdb.Transaction:
        if self._env is None:
            raise CodeStoreError(f"the code store at {self.path} was closed")
        return self._env.begin(write=write)

    def __enter__(self) -> CodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._begin() as txn:
            return txn.stat(self._records_db)["entries"]

    def __contains__(self, clip_index: int) -> bool:
        if clip_index < 0:
            return False
        with self._begin() as txn:
            return txn.get(_KEY.pack(clip_index), db=self._records_db) is not None

    def keys(self) -> list[int]:
        """The clip indices held, in increasing order (position i of `get` is clip ``keys()[i]``)."""
        return self._positions().tolist()

    def get(self, i: int) -> CodeRecord:
        """The record at position `i` in clip order (the record of clip `i` when every clip is present)."""
        keys = self._positions()
        if not 0 <= i < len(keys):
            raise IndexError(f"position {i} out of range for the {len(keys)} records of {self.path}")
        key = int(keys[i])
        with self._begin() as txn:
            value = txn.get(_KEY.pack(key), db=self._records_db)
        if value is None:
            raise CodeStoreError(f"{self.path}: record of clip {key} vanished; was it written while read?")
        return self._decode(key, value)

    def append(
        self,
        top: Tensor | np.ndarray,
        bottom: Tensor | np.ndarray,
        sources: Sequence[str],
        keys: Sequence[int],
    ) -> None:
        """Write the codes of N clips in one transaction: either all N records are stored or none.

        top: (N, *meta.top_shape) integers in [0, num_codes); bottom: (N, *meta.bottom_shape) likewise;
        sources: N descriptions; keys: N clip indices, none of them already in the store.
        """
        if not self.writable:
            raise CodeStoreError(f"{self.path} was opened read-only; use CodeStore.create_or_open to append")
        top_codes = self._check_codes("top", top, self.meta.top_shape)
        bottom_codes = self._check_codes("bottom", bottom, self.meta.bottom_shape)
        if not len(top_codes) == len(bottom_codes) == len(sources) == len(keys):
            raise ValueError(
                f"append needs as many top ({len(top_codes)}) and bottom ({len(bottom_codes)}) code arrays "
                f"as sources ({len(sources)}) and keys ({len(keys)})"
            )
        keys = [operator.index(key) for key in keys]  # numpy integers are welcome, floats are not
        if len(set(keys)) != len(keys) or min(keys, default=0) < 0:
            raise ValueError(f"append needs distinct non-negative clip indices as keys, got {keys}")
        values = [
            (_KEY.pack(key), _encode_record(top_codes[n], bottom_codes[n], sources[n]))
            for n, key in enumerate(keys)
        ]
        self._write(values)
        self._keys = None

    def merge_from(self, other: CodeStore, chunk: int = 1024) -> int:
        """Copy into this store every record of `other` (a store of the same VQ-VAE and data) that it lacks;
        returns how many. Records are checked as they are read and written `chunk` to a transaction, so a merge
        killed midway leaves whole records behind and, run again, copies the rest."""
        if not self.writable:
            raise CodeStoreError(f"{self.path} was opened read-only; use CodeStore.create_or_open to merge")
        if other.meta != self.meta:
            raise CodeStoreError(
                f"refusing to merge {other.path} (codes of VQ-VAE {other.meta.fingerprint!r} for "
                f"{other.meta.source!r}) into {self.path} (codes of VQ-VAE {self.meta.fingerprint!r} for "
                f"{self.meta.source!r})"
            )
        copied = 0
        keys = other.keys()
        for start in range(0, len(keys), chunk):
            wanted = [key for key in keys[start:start + chunk] if key not in self]
            values = []
            with other._begin() as txn:
                for key in wanted:
                    value = txn.get(_KEY.pack(key), db=other._records_db)
                    other._decode(key, value)  # a damaged record stops the merge, naming the store and clip
                    values.append((_KEY.pack(key), value))
            self._write(values)
            copied += len(values)
        self._keys = None
        return copied

    def codebooks(self) -> Codebooks | None:
        """The VQ-VAE's codebooks, or None if the store was written without them."""
        with self._begin() as txn:
            raw = txn.get(_CODEBOOKS_KEY, db=self._env.open_db(_META_DB, txn=txn, create=False))
        if raw is None:
            return None
        try:
            buffer = io.BytesIO(raw)
            arrays = [_read_array(buffer, len(raw)) for _ in range(2)]
        except (ValueError, EOFError) as error:
            raise CodeStoreError(f"{self.path}: the stored codebooks are damaged ({error})") from error
        return Codebooks(*(self._check_codebook(level, array) for level, array in zip(("top", "bottom"), arrays,
                                                                                        strict=True)))

    def put_codebooks(self, top: Tensor | np.ndarray, bottom: Tensor | np.ndarray) -> None:
        """Store the VQ-VAE's codebooks, (K, D) each, unless the store holds them already (the fingerprint
        check when the store was opened guarantees they are the same)."""
        if not self.writable:
            raise CodeStoreError(f"{self.path} was opened read-only; use CodeStore.create_or_open to write")
        arrays = [self._check_codebook(level, codebook) for level, codebook in (("top", top), ("bottom", bottom))]
        buffer = io.BytesIO()
        for array in arrays:
            np.lib.format.write_array(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
        with self._begin(write=True) as txn:
            txn.put(_CODEBOOKS_KEY, buffer.getvalue(), db=self._env.open_db(_META_DB, txn=txn), overwrite=False)

    def _check_codebook(self, level: str, codebook: Tensor | np.ndarray) -> np.ndarray:
        array = _as_array(codebook)
        num_codes = self.meta.num_codes
        if array.ndim != 2 or array.shape[0] != num_codes or not np.issubdtype(array.dtype, np.floating):
            raise CodeStoreError(f"{self.path}: the {level} codebook must be a float ({num_codes}, D) array, "
                                 f"got {array.dtype} {array.shape}")
        if not np.isfinite(array).all():
            raise CodeStoreError(f"{self.path}: the {level} codebook holds non-finite values")
        return array.astype(np.float32)

    def _write(self, values: list[tuple[bytes, bytes]]) -> None:
        while True:
            try:
                with self._begin(write=True) as txn:
                    for key, value in values:
                        if not txn.put(key, value, db=self._records_db, overwrite=False):
                            raise CodeStoreError(
                                f"{self.path} already holds the codes of clip {_KEY.unpack(key)[0]}"
                            )
                return
            except lmdb.MapFullError:
                # The transaction was aborted, so nothing of it is stored; a bigger map holds the retry.
                self._env.set_mapsize(2 * self._env.info()["map_size"])

    def _check_codes(self, level: str, codes: Tensor | np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        array = _as_array(codes)
        if array.ndim != 4 or array.shape[1:] != shape:
            raise CodeStoreError(
                f"{self.path} holds {level} codes of shape (N, {', '.join(map(str, shape))}), "
                f"got {tuple(array.shape)}"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{level} codes must be integers, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= self.meta.num_codes):
            raise ValueError(
                f"{level} codes must lie in [0, {self.meta.num_codes}), got values in "
                f"[{array.min()}, {array.max()}]"
            )
        return array.astype(STORAGE_DTYPE)

    def _positions(self) -> np.ndarray:
        if self._keys is None:
            with self._begin() as txn, txn.cursor(db=self._records_db) as cursor:
                self._keys = np.array(
                    [_KEY.unpack(key)[0] for key in cursor.iternext(keys=True, values=False)], dtype=np.int64
                )
        return self._keys

    def _decode(self, key: int, value: bytes) -> CodeRecord:
        try:
            buffer = io.BytesIO(value)
            top = _read_array(buffer, len(value))
            bottom = _read_array(buffer, len(value))
            source = buffer.read().decode("utf-8")
        except (ValueError, EOFError, UnicodeDecodeError) as error:
            raise CodeStoreError(f"{self.path}: the record of clip {key} is damaged ({error})") from error
        expected = (("top", top, self.meta.top_shape), ("bottom", bottom, self.meta.bottom_shape))
        for level, array, shape in expected:
            if array.dtype != STORAGE_DTYPE or array.shape != shape:
                raise CodeStoreError(
                    f"{self.path}: the record of clip {key} is damaged: {level} codes are {array.dtype} "
                    f"{array.shape}, expected {STORAGE_DTYPE} {shape}"
                )
        return CodeRecord(
            top=torch.from_numpy(top.astype(np.int64)),
            bottom=torch.from_numpy(bottom.astype(np.int64)),
            source=source,
        )


def _as_array(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)


def _read_array(buffer: io.BytesIO, size: int) -> np.ndarray:
    """One `.npy` array from `buffer` (of `size` bytes), refused before anything is allocated when its header
    declares more bytes than the buffer holds (a damaged header would otherwise allocate what it claims)."""
    start = buffer.tell()
    version = np.lib.format.read_magic(buffer)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy format version {version}")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(buffer)
    declared = math.prod(shape) * dtype.itemsize
    if dtype.hasobject or declared > size - buffer.tell():
        raise ValueError(f"its header declares a {dtype} array of shape {shape} ({declared:,} bytes), more than "
                         f"the {size - buffer.tell():,} bytes left in the record")
    buffer.seek(start)
    return np.lib.format.read_array(buffer, allow_pickle=False)


def _encode_record(top: np.ndarray, bottom: np.ndarray, source: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(top), allow_pickle=False)
    np.lib.format.write_array(buffer, np.ascontiguousarray(bottom), allow_pickle=False)
    buffer.write(source.encode("utf-8"))
    return buffer.getvalue()


# realpath of a store -> (pid, environment) of the read-only environment its readers in that process share.
_readers: dict[str, tuple[int, weakref.ref[lmdb.Environment]]] = {}


def _live_reader(path: Path) -> lmdb.Environment | None:
    """This process's shared read-only environment of `path`, if a reader still holds it."""
    pid, reference = _readers.get(os.path.realpath(path), (None, None))
    return reference() if reference is not None and pid == os.getpid() else None


def _shared_reader(path: Path) -> lmdb.Environment:
    env = _live_reader(path)
    if env is not None:
        return env
    pid, reference = _readers.get(os.path.realpath(path), (None, None))
    inherited = reference() if reference is not None else None
    if inherited is not None:
        # Opened before a fork: a child must not use it and LMDB refuses a second environment of the same
        # files, so close the child's copy; unlocked and read-only, that leaves the parent's untouched.
        inherited.close()
    env = _open_env(path, readonly=True)
    _readers[os.path.realpath(path)] = (os.getpid(), weakref.ref(env))
    return env


def _open_env(path: Path, readonly: bool, map_size: int = DEFAULT_MAP_SIZE) -> lmdb.Environment:
    try:
        if readonly:
            # lock=False: readers then need no write access to the folder and no shared lock table, which
            # suits many DataLoader workers; it is why nothing may write while a store is read.
            return lmdb.open(
                str(path), readonly=True, lock=False, create=False, max_dbs=2, readahead=False, subdir=True
            )
        return lmdb.open(str(path), map_size=map_size, max_dbs=2, subdir=True)
    except lmdb.Error as error:
        raise CodeStoreError(f"cannot open the code store at {path}: {error}") from error


def _read_meta(path: Path, env: lmdb.Environment, txn: lmdb.Transaction) -> CodeStoreMeta:
    try:
        meta_db = env.open_db(_META_DB, txn=txn, create=False)
        env.open_db(_RECORDS_DB, txn=txn, create=False)
    except lmdb.Error as error:
        raise CodeStoreError(f"{path} is not a code store: it lacks the meta and records tables") from error
    raw = txn.get(_META_KEY, db=meta_db)
    if raw is None:
        raise CodeStoreError(f"{path} is damaged: its metadata is missing")
    try:
        return CodeStoreMeta.from_json(raw.decode("utf-8"))
    except (ValueError, TypeError) as error:  # also a version this vqvid does not read
        raise CodeStoreError(f"{path} has metadata this vqvid cannot read: {error}") from error


def _init_or_read_meta(path: Path, env: lmdb.Environment, meta: CodeStoreMeta) -> CodeStoreMeta:
    with env.begin(write=True) as txn:
        # An empty environment is a new store, or one whose creation was killed before its first commit.
        if not txn.cursor().first():
            meta_db = env.open_db(_META_DB, txn=txn)
            env.open_db(_RECORDS_DB, txn=txn)
            txn.put(_META_KEY, meta.to_json().encode("utf-8"), db=meta_db)
            return meta
        return _read_meta(path, env, txn)


def _mismatch_message(path: Path, stored: CodeStoreMeta, given: CodeStoreMeta) -> str:
    differences = [
        f"{name}: stored {getattr(stored, name)!r}, given {getattr(given, name)!r}"
        for name in ("top_shape", "bottom_shape", "num_codes", "source")
        if getattr(stored, name) != getattr(given, name)
    ]
    return (
        f"{path} holds codes of VQ-VAE {stored.fingerprint!r}, refusing to add codes of VQ-VAE "
        f"{given.fingerprint!r}" + (f" ({'; '.join(differences)})" if differences else "")
        + ". Write to a new folder, or use the VQ-VAE and data the store was made with."
    )
