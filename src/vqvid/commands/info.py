"""`vqvid info`: what a .vqv file holds and what it costs, from its header alone (no model needed); or what a
model folder holds.

    vqvid info clip.vqv
    vqvid info MODEL_DIR

For a .vqv file: the format version, the model fingerprint, the software and CPU that wrote the file, the coding
mode, the levels it holds (top and bottom, or top only: written with `--levels top` or cut after its top layer)
with the bytes of each, the video's geometry and timing, and the rates (bits per pixel, kbit/s, bits per code) of
the whole file. The file is fully validated first (CRCs included).

For a model folder (`vqvid export`): its fingerprint (what .vqv files it writes record), the clips it codes and
their code grids, and for the VQ-VAE and each prior its fingerprint, size and main settings. The folder is
loaded, so its weights are checked against the fingerprints first.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="a .vqv file or a model folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.codec.container import TopLayerWholeError, describe, read_vqv
    from vqvid.persistence import is_model_folder

    try:
        if is_model_folder(args.input):
            text = describe_model_folder(args.input)
        elif args.input.is_dir():
            raise ValueError(f"{args.input}: a folder, but neither a vqvid model folder (no model.json) nor a "
                             ".vqv file")
        else:
            text = describe(read_vqv(args.input), os.path.getsize(args.input))
    except (ValueError, OSError) as error:
        note = ("; `vqvid decompress --levels top` decodes its coarse video"
                if isinstance(error, TopLayerWholeError) else "")
        print(f"vqvid info: {error}{note}", file=sys.stderr)
        return 2
    print(text)  # outside the try: a reader that went away is not an error about the input (`vqvid.cli`)
    return 0


def describe_model_folder(path: Path) -> str:
    """Lines about a model folder: its fingerprint, geometry, and each model's fingerprint, size and settings."""
    from vqvid.geometry import clip_geometry
    from vqvid.persistence import load_model_folder

    folder = load_model_folder(path)
    geometry = clip_geometry(folder)
    vqvae = folder.vqvae.config
    grid = "x".join
    lines = [
        f"fingerprint  {folder.fingerprint}",
        f"clips        {geometry.clip_frames} frames of {geometry.width}x{geometry.height}",
        f"code grids   top {grid(map(str, geometry.top_shape))}, bottom {grid(map(str, geometry.bottom_shape))} "
        "per clip, "
        f"{geometry.num_codes} codes per level",
        f"vqvae        {folder.vqvae.fingerprint}: {_parameters(folder.vqvae.model)}; {vqvae.channels} channels, "
        f"{vqvae.hierarchy} hierarchy, {vqvae.block} blocks, level dropout {vqvae.level_dropout:g}",
    ]
    for level, prior in (("top", folder.top), ("bottom", folder.bottom)):
        if prior is None:
            lines.append(f"{level + ' prior':<12} none (`vqvid compress --fixed` only; no prediction)")
            continue
        config = prior.config
        heads = [name for name, on in (("tied", config.tied_head), ("copy", config.copy_head)) if on]
        lines.append(f"{level + ' prior':<12} {prior.fingerprint}: {_parameters(prior.model)}; {config.channels} "
                     f"channels, {config.n_blocks} blocks, attention {'on' if config.attention else 'off'}"
                     + (f", {' and '.join(heads)} head" if heads else ""))
    if folder.reader is not None:
        config = folder.reader.config
        lines.append(f"{'reader':<12} {folder.reader.fingerprint}: {_parameters(folder.reader.model)}; reads "
                     f"{config.context} frames, predicts the top codes of the {config.frames - config.context} "
                     f"after them; {config.channels} channels")
    return "\n".join(lines)


def _parameters(model) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
