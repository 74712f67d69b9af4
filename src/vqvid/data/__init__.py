"""Video data: clips 3×T×H×W in [-1, 1] from video files, frame folders, prepared stores or synthetic shapes.

`open_clips(source, spec, split)` is the one entry point; `prepare_store` decodes a source once into a store
that `open_clips` reads fast; `write_video` writes results as GIF / MP4. Code stores live in `data.codes`.
"""

from vqvid.data.sources import Clips, open_clips, select_frames
from vqvid.data.store import ClipStore, is_store, prepare_store
from vqvid.data.synthetic import MovingShapes, write_synthetic_videos
from vqvid.data.video import ClipSpec, DataError, DataWarning, from_uint8_frames, to_uint8_frames, write_video

__all__ = [
    "ClipSpec",
    "ClipStore",
    "Clips",
    "DataError",
    "DataWarning",
    "MovingShapes",
    "from_uint8_frames",
    "is_store",
    "open_clips",
    "prepare_store",
    "select_frames",
    "to_uint8_frames",
    "write_synthetic_videos",
    "write_video",
]
