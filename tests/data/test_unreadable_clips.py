"""Clips that fail to read outside training: extraction leaves them out of the code store and `read_clips`
(reconstruct, predict, rd) takes the next ones; both warn once per clip and once at the end with the count."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import Dataset

from vqvid.data import DataError, DataWarning
from vqvid.data.codes import CodeStore, CodeStoreMeta, extract_codes
from vqvid.data.sources import read_clips


class FlakyClips(Dataset):
    """n random clips (3, 4, 16, 16); reading those in `broken` raises DataError as a damaged file does."""

    def __init__(self, n: int, broken: set[int]) -> None:
        self.clips = torch.rand(n, 3, 4, 16, 16, generator=torch.Generator().manual_seed(n)) * 2 - 1
        self.broken = broken

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index in self.broken:
            raise DataError(f"v.mp4: frame {index} at {index / 10:.3f} s did not decode again")
        return self.clips[index]

    def describe(self, index: int) -> str:
        return f"v.mp4@frame={index}"


def _data_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_extraction_leaves_unreadable_clips_out_and_a_rerun_tries_them_again(tmp_path):
    meta = CodeStoreMeta("vqvae-test", (1, 1, 1), (1, 1, 1), 16, "flaky")
    encode = lambda clips: (clips[:, :1, :1, :1, 0].long().abs(), clips[:, :1, :1, :1, 0].long().abs())  # noqa: E731
    flaky = FlakyClips(6, broken={1, 4})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = extract_codes(encode, flaky, tmp_path / "codes", meta, batch_size=4, progress=False)
    messages = _data_warnings(caught)
    assert written == 4 and len(messages) == 3
    assert "v.mp4: frame 1 at 0.100 s" in messages[0] and "v.mp4: frame 4 at 0.400 s" in messages[1]
    assert messages[2].startswith("extract: 2 of 6 clips could not be read")
    with CodeStore.open(tmp_path / "codes") as store:
        assert store.keys() == [0, 2, 3, 5]
    flaky.broken = set()  # the file is readable again
    assert extract_codes(encode, flaky, tmp_path / "codes", meta, batch_size=4, progress=False) == 2


def test_read_clips_takes_the_next_readable_clips_and_counts_the_skipped():
    flaky = FlakyClips(6, broken={0, 2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = read_clips(flaky, 3, "predict")
    assert [int(torch.nonzero((flaky.clips == c).all(dim=(1, 2, 3, 4))).item()) for c in clips] == [1, 3, 4]
    messages = _data_warnings(caught)
    assert len(messages) == 3 and "frame 0 at 0.000 s" in messages[0]
    assert messages[2].startswith("predict: 2 of 5 clips (40.0%) could not be read and were skipped: "
                                  "v.mp4@frame=0, v.mp4@frame=2")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="none of the clips could be read"):
        read_clips(FlakyClips(2, broken={0, 1}), 1, "rd")
