"""Checks of command-line options shared by several commands. Each raises ValueError with one line that names
the option and says what was expected; commands print it and exit with status 2, before any work is done."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

OUTPUT_VIDEO_SUFFIXES = (".gif", ".mp4", ".mkv")  # what `vqvid.data.write_video` writes
# What --fps defaults to (`vqvid.data.inputs.clips_fps`), for the commands' help
INPUT_FPS_HELP = ("the model's data.fps if it resamples clips to one, else the rate of INPUT's first video (of "
                  "frame folders: data.source_fps), else 10 (synthetic clips, stores prepared without --fps)")


def device(value: str, option: str = "--device") -> str:
    """`value` once torch knows it as a device that this machine has."""
    import torch

    try:
        parsed = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{option} {value}: not a torch device; expected e.g. cpu, cuda or cuda:1") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{option} {value}: this machine has no CUDA device; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{option} {value}: this machine has {count} CUDA device(s), 0 to {count - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {value}: MPS is not available on this machine; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{option} {value}: vqvid runs on cpu, cuda or mps devices")
    return value


def at_least(value: int | None, minimum: int, option: str) -> int | None:
    if value is not None and value < minimum:
        raise ValueError(f"{option} {value}: expected at least {minimum}")
    return value


def frame_rate(value: float | None, option: str = "--fps", maximum: float = 1000.0) -> float | None:
    """A positive, finite frame rate of at most `maximum` frames per second (or None)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= maximum):
        raise ValueError(f"{option} {value}: expected a frame rate above 0 and at most {maximum:g}")
    return value


def output_files(inputs: Sequence[str | Path],
                 *outputs: tuple[str, Path | None, tuple[str, ...] | None]) -> None:
    """Every output (option, path or None when not asked for, suffixes or None) checked by `output_file`
    against the command's `inputs` and the outputs before it: no two of them may be one file."""
    taken = list(inputs)
    for option, path, suffixes in outputs:
        if path is not None:
            output_file(path, option, suffixes, inputs=taken)
            taken.append(path)


def output_file(path: Path, option: str, suffixes: tuple[str, ...] | None = None,
                inputs: Sequence[str | Path] = ()) -> Path:
    """An output path that is not a folder, ends in one of `suffixes` if given, can be written (its missing
    folders are made when it is: `vqvid.files.atomic_path`) and is none of the command's `inputs`."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path}: expected a file ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; expected a file name")
    nearest = next(folder for folder in path.absolute().parents if folder.exists())
    if not nearest.is_dir():
        raise ValueError(f"{option} {path}: {nearest} is a file, so no folder can hold the output there")
    not_an_input(path, option, inputs)
    return path


def not_an_input(output: Path, option: str, inputs: Sequence[str | Path]) -> None:
    """Refuses an output path that is one of the inputs (the same path, or another name of the same file), or
    that lies inside an input folder (a frame folder, a store, the model folder): writing it would replace or
    change what is being read."""
    try:
        target = output.resolve()
    except (OSError, RuntimeError) as error:  # a loop of symbolic links
        raise ValueError(f"{option} {output}: cannot be resolved ({error})") from None
    for source in map(Path, inputs):
        if target == source.resolve():  # also another output of the same command, not written yet
            what = "the input" if source.exists() else "another output,"
            raise ValueError(f"{option} {output}: this is {what} {source}; write the output to another file")
        if not source.exists():
            continue
        inside = source.is_dir() and source.resolve() in target.parents
        if inside or (output.exists() and output.samefile(source)):
            where = "inside the input folder" if inside else "the input"
            raise ValueError(f"{option} {output}: this is {where} {source}; write the output to another file")


@contextlib.contextmanager
def output_error(option: str, path: Path) -> Iterator[None]:
    """An output that cannot be written (`vqvid.files.OutputError`, which names `path`) named by its option too:
    "-o out.gif: cannot be written (...)"."""
    from vqvid.files import OutputError

    try:
        yield
    except OutputError as error:
        raise OutputError(f"{option} {error}") from None
