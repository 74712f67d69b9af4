"""`vqvid demo`: the whole pipeline on synthetic moving shapes, sized for a CPU.

    vqvid demo [--out demo_out] [--fast] [--vqvae-set KEY=VALUE ...]

Each stage runs the same code as its own `vqvid` command (through that command's `main(argv)`):
  1. data         synthetic clips; held-out test clips written as an MP4 file, read back like any user video
  2. vqvae        `vqvid train vqvae --preset tiny`
  3. reconstruct  `vqvid reconstruct` of the held-out video: input | reconstruction, and the three level panels
  4. extract      `vqvid extract`: codes of the priors' training clips (2,048, more than the VQ-VAE's 512) and
                  of held-out validation clips
  5. priors       `vqvid train prior --level top`, then `--level bottom`; bits per code on held-out codes, and
                  how near the top prior continues their top codes after the prediction's context, against
                  repeating its last latent frame (`continuation_scores`)
  6. reader       `vqvid train reader`: the context reader, which reads the prediction's context frames and
                  predicts the top codes after them, on the priors' training clips
  7. export       `vqvid export`: one model folder with the VQ-VAE, both priors and the context reader
  8. predict      `vqvid predict`: the second half of held-out clips from their first half, against the
                  copy-last-frame baseline, and whether the shapes keep their identity (the generator knows
                  where each one is); the top codes from the context reader, and again from the top prior
  9. compress     `vqvid compress` / `decompress` of a held-out video, and `vqvid rd` against x264/x265
Writes `report.md` (for people) and `report.json` (the same figures) into the output folder. A demo run again
into its folder replaces its runs; a non-empty `--out` that is not a demo's is refused, before any work.
`--fast` shrinks every stage to a smoke test (used by the test suite); its figures mean nothing.
`--vqvae-set KEY=VALUE` (repeatable) changes the VQ-VAE's `tiny` config as `vqvid train vqvae` overrides do, e.g.
`--vqvae-set model.top_slowness=0.02`, so that a change is measured by every stage after it; the report names it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqvid demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--fast", action="store_true", help="smoke-test sizes: seconds, meaningless figures")
    parser.add_argument("--vqvae-steps", type=int, help="override the VQ-VAE's training steps")
    parser.add_argument("--vqvae-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the VQ-VAE's `tiny` config, as in `vqvid train vqvae` "
                             "(repeatable), e.g. model.top_slowness=0.02")
    return parser


@dataclass
class Demo:
    out: Path
    fast: bool
    vqvae_steps: int | None = None
    vqvae_overrides: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def train_source(self) -> str:
        return "synthetic:64" if self.fast else "synthetic:512"

    @property
    def prior_source(self) -> str:
        """The priors' training clips: more than the VQ-VAE's, since synthetic clips cost only their extraction
        (16 s more) and the top prior overfits 512 (held-out bits per code 4.40 against 4.35 from 2,048 in the
        demo's 600 steps; 4.76 against 3.69 in 3,200, README, Benchmarks)."""
        return "synthetic:64" if self.fast else "synthetic:2048"

    @property
    def reader_source(self) -> str:
        """The context reader's training clips: the priors' (their frames, where the priors had their codes)."""
        return self.prior_source

    def stage(self, name: str, run: Callable[[], None]) -> None:
        print(f"\n=== demo: {name}", flush=True)
        start = time.perf_counter()
        run()
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"=== demo: {name} done in {self.seconds[name]:.1f} s", flush=True)

    def fresh(self, folder: Path) -> Path:
        """`folder` emptied of an earlier demo's output: a demo run again starts its stages anew (training
        refuses a run folder that holds a run, extraction a store of another VQ-VAE). Only ever inside an --out
        that `check_out` took for a demo's."""
        import shutil

        if folder.is_dir():
            shutil.rmtree(folder)
        return folder

    def run_command(self, name: str, argv: list[str]) -> None:
        import importlib

        print("$ vqvid " + " ".join([name, *argv]), flush=True)
        code = importlib.import_module(f"vqvid.commands.{name}").main(argv)
        if code:
            raise SystemExit(f"vqvid demo: stage `vqvid {name}` failed with exit code {code}")

    # --- stages -------------------------------------------------------------------------------------------

    def data(self) -> None:
        self.test_videos = write_held_out_videos(self.out / "data", 1 if self.fast else HELD_OUT_VIDEOS)
        self.figures["data"] = {"train_source": self.train_source, "prior_source": self.prior_source,
                                "test_videos": [str(p) for p in self.test_videos]}

    def vqvae_argv(self, out: Path) -> list[str]:
        """The arguments of the vqvae stage's `vqvid train`, training into `out`."""
        steps = self.vqvae_steps if self.vqvae_steps is not None else (20 if self.fast else None)
        argv = ["vqvae", "--data", self.train_source, "--preset", "tiny", "--out", str(out)]
        if steps is not None:
            argv += ["--max-steps", str(steps), f"train.val_every={min(steps, 200)}"]
        if self.fast:
            argv += ["train.num_workers=0", "train.batch_size=4", "model.channels=16", "model.res_channels=8"]
        return argv + self.vqvae_overrides

    def check_vqvae_config(self) -> None:
        """Refuses, before any work, a VQ-VAE config that the vqvae stage's `vqvid train` would refuse: its own
        parsing and validation of the overrides, against the `tiny` preset."""
        from vqvid.commands import train
        from vqvid.config import ConfigError
        from vqvid.presets import VQVAERun, get_preset

        args = train.parse_args(self.vqvae_argv(self.out / "vqvae"))
        try:
            train.resolve_run(VQVAERun, get_preset(args.preset).vqvae, args)
        except ConfigError as error:
            raise ValueError(f"--vqvae-set: {error}") from None

    def vqvae(self) -> None:
        self.run_command("train", self.vqvae_argv(self.fresh(self.out / "vqvae")))
        self.vqvae_ckpt = self.out / "vqvae" / "checkpoints" / "last.ckpt"

    def reconstruct(self) -> None:
        results = {}
        for levels, name in ((False, "reconstruction"), (True, "levels")):
            figures = self.out / f"{name}.json"
            argv = ["--vqvae", str(self.vqvae_ckpt), str(self.test_videos[0].parent), "-o",
                    str(self.out / f"{name}.gif"), "--json", str(figures)]
            self.run_command("reconstruct", argv + (["--levels"] if levels else []))
            results[name] = json.loads(figures.read_text())
            figures.unlink()
        self.figures["reconstruction"] = results["reconstruction"]
        self.figures["levels"] = results["levels"]["levels"]

    def extract(self) -> None:
        self.codes = {}
        for split, source in (("train", self.prior_source), ("val", "synthetic:16" if self.fast else "synthetic:64")):
            self.codes[split] = self.fresh(self.out / "codes" / split)
            self.run_command("extract", ["--vqvae", str(self.vqvae_ckpt), "--data", source, "--split", split,
                                         "--out", str(self.codes[split]), "--batch-size", "8"])

    def priors(self) -> None:
        from vqvid.data.codes import CodeDataset
        from vqvid.persistence import load_prior
        from vqvid.training.prior import bits_per_code

        self.prior_ckpts, figures = {}, {}
        for level in ("top", "bottom"):
            out = self.fresh(self.out / f"prior_{level}")
            argv = ["prior", "--level", level, "--codes", str(self.codes["train"]), "--val-codes",
                    str(self.codes["val"]), "--preset", "tiny", "--out", str(out)]
            if self.fast:
                argv += ["--max-steps", "4", "train.val_every=4", "model.channels=16", "model.n_blocks=1"]
            self.run_command("train", argv)
            self.prior_ckpts[level] = out / "checkpoints" / "last.ckpt"
            prior = load_prior(self.prior_ckpts[level], level)
            figures[level] = round(bits_per_code(prior.model, CodeDataset(self.codes["val"], level)), 3)
            if level == "top":
                self.figures["top_continuation"] = self.top_continuation(prior.model)
        self.figures["prior_bits_per_code"] = figures

    def top_continuation(self, prior) -> dict[str, Any] | None:
        """The top prior's continuation of the validation clips' top codes after the prediction's context, in
        code space, against repeating the context's last latent frame (`continuation_scores`)."""
        import torch

        from vqvid.commands.predict import DEFAULT_TEMPERATURE
        from vqvid.data.codes import CodeDataset
        from vqvid.models.vqvae import TIME_FACTOR
        from vqvid.sampling.predict import continuation_scores

        dataset = CodeDataset(self.codes["val"], "top")
        codebooks = dataset.codebooks()
        if codebooks is None:
            return None
        codes = dataset.stacked()
        context = CONTEXT_FRAMES // TIME_FACTOR  # latent frames
        rows = continuation_scores(prior, codes, torch.from_numpy(codebooks.top), context,
                                   temperature=DEFAULT_TEMPERATURE, generator=torch.Generator().manual_seed(0))
        return {"context": context, "clips": len(codes), "temperature": DEFAULT_TEMPERATURE, "rows": rows}

    def reader(self) -> None:
        from vqvid.training.runner import VALIDATION_HISTORY, read_validation_history

        out = self.fresh(self.out / "reader")
        argv = ["reader", "--vqvae", str(self.vqvae_ckpt), "--data", self.reader_source, "--preset", "tiny",
                "--out", str(out)]
        if self.fast:
            argv += ["--max-steps", "4", "train.val_every=4", "train.num_workers=0", "model.channels=16"]
        self.run_command("train", argv)
        self.reader_ckpt = out / "checkpoints" / "last.ckpt"
        step, figures = read_validation_history(out / VALIDATION_HISTORY)[-1]
        self.figures["reader"] = {"steps": step, "bits_per_code": round(figures["val/bits_per_code"], 3),
                                  "accuracy": round(figures["val/accuracy"], 4)}

    def export(self) -> None:
        self.model_dir = self.out / "model"
        self.run_command("export", ["--vqvae", str(self.vqvae_ckpt), "--top", str(self.prior_ckpts["top"]),
                                    "--bottom", str(self.prior_ckpts["bottom"]), "--reader", str(self.reader_ckpt),
                                    "--out", str(self.model_dir)])

    def predict(self) -> None:
        """The default decoding, then the same clips and seed sampled at temperature 1 (the model's own
        distribution), and with the top codes from the top prior instead of the context reader, whose GIFs are
        not kept."""
        import torch

        results, shapes, near = {}, {}, {}
        clips = str(len(self.test_videos) * HELD_OUT_CLIPS_PER_VIDEO)  # every held-out clip
        runs = (("predict", []), ("predict_t1", ["--temperature", "1", "--reader-temperature", "1"]),
                ("predict_prior", ["--no-reader"]))
        for name, extra in runs:
            figures, saved = self.out / f"{name}.json", self.out / f"{name}.pt"
            argv = ["--model", str(self.model_dir), str(self.test_videos[0].parent), "--context", str(CONTEXT_FRAMES),
                    "--frames", "16", "--samples", "2" if self.fast else "8", "--clips", clips, "-o",
                    str(self.out / f"{name}.gif"), "--json", str(figures), "--seed", "0",
                    "--save-samples", str(saved), *extra]
            self.run_command("predict", argv)
            results[name] = json.loads(figures.read_text())
            samples = torch.load(saved, weights_only=True)
            shapes[name] = held_out_shape_scores(samples)
            if name != "predict_t1":  # identity rather than place: the report's table of the default and the top prior
                near[name] = held_out_shape_scores(samples, stray=IDENTITY_STRAY, only=IDENTITY_READINGS)
            if name == "predict":  # the same samples as `--anchor warp` shows them
                from vqvid.sampling.predict import warp_along_decoding

                warped = warp_along_decoding(samples["decoded"], samples["clips"], samples["context"])
                frames, shapes[name]["mean_of_n_warp"] = mean_of_n_scores(samples, warped)
                for table in ("psnr_per_frame", "ssim_per_frame"):
                    results[name][table]["mean_of_n_warp"] = frames[table]
            figures.unlink()
            saved.unlink()
        for name, _ in runs[1:]:
            (self.out / f"{name}.gif").unlink()
        mean = lambda values: sum(values) / len(values)
        means = lambda table: {key: mean(values) for key, values in table.items() if key != "frame"}
        quality = lambda name: {  # one run's PSNR and SSIM per frame, their means, and the shapes kept
            "psnr_per_frame": results[name]["psnr_per_frame"], "ssim_per_frame": results[name]["ssim_per_frame"],
            "mean_psnr": means(results[name]["psnr_per_frame"]), "mean_ssim": means(results[name]["ssim_per_frame"]),
            "shapes": shapes[name]}
        result, prior = results["predict"], results["predict_prior"]
        self.figures["prediction"] = {
            "context_frames": 8, "generated_frames": 8, "samples": result["samples"],
            "decoding": result["decoding"], "temperature": result["temperature"], "anchor": result["anchor"],
            "reader_temperature": result["reader_temperature"], "reader_passes": result["reader_passes"],
            "positions_per_second": result["positions_per_second"], "method": result["method"],
            **quality("predict"), "padding_cost": result.get("padding_cost"),
            "shapes_near": {"stray": IDENTITY_STRAY, **near["predict"]},
            "top_codes_from": result["top_codes_from"],
            "temperature_1": quality("predict_t1"),
            "top_prior": {  # the same clips, seed and decoding, the top codes from the top prior (`--no-reader`)
                "top_codes_from": prior["top_codes_from"], **quality("predict_prior"),
                "shapes_near": {"stray": IDENTITY_STRAY, **near["predict_prior"]},
            },
        }

    def compress(self) -> None:
        video = str(self.test_videos[0])
        vqv, figures_path = self.out / "heldout.vqv", self.out / "compress.json"
        self.run_command("compress", ["--model", str(self.model_dir), video, "-o", str(vqv), "--json",
                                      str(figures_path), "--no-progress"])
        figures = json.loads(figures_path.read_text())
        figures_path.unlink()
        self.run_command("info", [str(vqv)])
        self.run_command("decompress", [str(vqv), "--model", str(self.model_dir), "-o",
                                        str(self.out / "decompressed.gif"), "--no-progress"])
        rd_path = self.out / "rd.json"
        crfs = ["28", "51"] if self.fast else ["18", "23", "28", "33", "38", "43", "51"]
        self.run_command("rd", ["--model", str(self.model_dir), video, "-o", str(self.out / "rd.png"), "--json",
                                str(rd_path), "--crf", *crfs])
        self.figures["compression"] = {
            "bytes": figures["bytes"], "bits_per_pixel": figures["bits_per_pixel"],
            "bits_per_code": figures["bits_per_code"], "fixed_width_bytes": figures["fixed_width_bytes"],
            "share_of_fixed_width": figures["bytes"] / figures["fixed_width_bytes"],
            "rd": json.loads(rd_path.read_text()),
        }

    # --- report -------------------------------------------------------------------------------------------

    def report(self) -> None:
        report = {"figures": self.figures, "seconds": self.seconds, "fast": self.fast,
                  "vqvae_overrides": self.vqvae_overrides}
        from vqvid.files import write_text

        write_text(self.out / "report.json", json.dumps(report, indent=2))
        write_text(self.out / "report.md", render_report(report))
        print((self.out / "report.md").read_text())


# Written into --out before the first stage: the folder is a demo's, whose runs a demo run again replaces, even
# when the demo that wrote it was interrupted
DEMO_MARKER = ".vqvid-demo"


def is_demo_output(folder: Path) -> bool:
    """Whether `folder` holds an earlier demo's output: its DEMO_MARKER, or the report.json of a demo that
    finished before the marker was written."""
    if (folder / DEMO_MARKER).is_file():
        return True
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"figures", "seconds", "fast"} <= set(report)


def check_out(out: Path) -> None:
    """Refuses an --out that cannot be a folder, or that is a non-empty folder of something else than an earlier
    demo: the demo replaces the runs it finds there."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    nearest = next(folder for folder in out.absolute().parents if folder.exists())
    if not nearest.is_dir():
        raise ValueError(f"--out {out}: {nearest} is a file, so no folder can be made there")
    if out.is_dir() and any(out.iterdir()) and not is_demo_output(out):
        raise ValueError(f"--out {out}: not empty and not an earlier demo's output (no {DEMO_MARKER} or demo "
                         "report.json in it), whose runs the demo would replace; choose a new or empty folder")


# The held-out videos: HELD_OUT_FRAMES frames each (read as clips of 16), from a seed far from the training
# clips' seeds, so that they are held out and the generator can say where every shape is
HELD_OUT_SEED, HELD_OUT_FRAMES = 90_000, 32
# 8 clips: on 4, which of the prediction decoded from the codes alone and copy-last leads turned on the clips (the
# same model: +0.59 dB on the first 4, -0.32 on these 8, +0.23 on 16; anchored, +0.58 on these 8, +0.98 on 16);
# 16 would cost the demo's predict stage another 35 s
HELD_OUT_VIDEOS = 4
CONTEXT_FRAMES = 8  # prediction: frames 8-15 of each held-out clip from frames 0-7
HELD_OUT_CLIPS_PER_VIDEO = HELD_OUT_FRAMES // 16  # the `tiny` preset's clips of 16 frames


def write_held_out_videos(folder: Path, count: int) -> list[Path]:
    """The first `count` held-out videos (64×64 MP4s at 10 fps) written into `folder`; the demo writes
    HELD_OUT_VIDEOS of them, and more of the same generator measure its model on more clips."""
    from vqvid.data.synthetic import write_synthetic_videos

    return write_synthetic_videos(folder, count, size=64, frames=HELD_OUT_FRAMES, fps=10, seed=HELD_OUT_SEED)


def held_out_shapes(clips: Tensor, first: int, end: int) -> list[list[Any]]:
    """The generator's shapes (`MovingShapes.shapes`) of each held-out clip of `clips` (B, 3, T, H, W), the
    clips of the held-out videos in their order, cut to frames [first, end) of the clip. Raises if a clip is not
    the part of its video that its place says."""
    from dataclasses import replace

    from vqvid.data.synthetic import MovingShapes
    from vqvid.metrics import psnr

    b, _, t, size, _ = clips.shape
    videos = MovingShapes(b, frames=HELD_OUT_FRAMES, size=size, seed=HELD_OUT_SEED)
    per_video = HELD_OUT_FRAMES // t
    shapes = []
    for i in range(b):  # clip i: frames [t * (i % per_video), ...) of video i // per_video
        video, start = i // per_video, t * (i % per_video)
        truth = videos[video][:, start : start + t]
        if psnr(clips[i : i + 1], truth[None]) < 25:  # an MP4 round trip costs a few dB, another clip far more
            raise RuntimeError(f"held-out clip {i} is not frames {start}-{start + t - 1} of video {video}")
        cut = slice(start + first, start + end)
        shapes.append([replace(shape, visible=shape.visible[cut], without=shape.without[:, cut])
                       for shape in videos.shapes(video)])
    return shapes


def held_out_shape_scores(saved: dict[str, Any], stray: int = 0,
                          only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Shape figures (`vqvid.metrics.shape_scores`, with its `stray`) of a `vqvid predict --save-samples` file
    of the held-out videos, for each reading of the samples that `vqvid predict` reports but best of N (which
    picks by PSNR), or for those named in `only`. With clips of more than one video it adds "another_video",
    each clip's copy-last taken from another video: a scene of other shapes, what a reading scores by chance."""
    from vqvid.commands.predict import readings
    from vqvid.metrics import shape_scores

    clips, samples, context = saved["clips"], saved["samples"], saved["context"]  # (B, 3, T, ...), (B, S, 3, ...)
    (b, _, t, _, _), s = clips.shape, samples.shape[1]
    end = min(t, samples.shape[3])
    per_video = HELD_OUT_FRAMES // t
    shapes = held_out_shapes(clips, context, end)
    per_sample = [clip for clip in shapes for _ in range(s)]  # rows of single-sample readings are clip-major
    pairs = readings(clips, samples, saved["generated_top"], context, saved.get("decoded"))
    if b > per_video and b % per_video == 0:  # whole videos, so that a roll by one video lands on another
        copied, truth = pairs["copy_last"]
        pairs["another_video"] = (copied.roll(per_video, 0), truth)
    scores = {name: shape_scores(prediction, truth, shapes if len(prediction) == b else per_sample, stray=stray)
              for name, (prediction, truth) in pairs.items()
              if name != "best_of_n" and (only is None or name in only)}
    _, truth = pairs["copy_last"]
    counted = shape_scores(truth, truth, shapes).shapes  # which shapes count depends on the truth alone
    return {"frame": list(range(context, end)), "shapes": counted,
            **{name: {"kept": score.kept, "psnr": score.psnr} for name, score in scores.items()}}


def mean_of_n_scores(saved: dict[str, Any], video: Tensor) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The pixel mean of `video` (B, S, 3, F, H, W), another reading of the samples of a `vqvid predict
    --save-samples` file of the held-out videos (e.g. anchored another way), scored as `vqvid predict` and
    `held_out_shape_scores` score the file's own: (PSNR and SSIM per predicted frame, shapes kept and PSNR inside
    them)."""
    from vqvid.commands.predict import quality_tables

    tables = quality_tables(saved["clips"], video, None, saved["context"])
    frames = {table: tables[table]["mean_of_n"] for table in ("psnr_per_frame", "ssim_per_frame")}
    return frames, held_out_shape_scores({**saved, "samples": video, "decoded": None})["mean_of_n"]


PREDICTION_ROWS = (("mean_of_n", "mean of the samples (default)"), ("generated", "single sample"),
                   ("best_of_n", "best of N"), ("generated_top", "sampled top + true bottom"),
                   ("mean_of_n_warp", "mean of the samples, warped (`--anchor warp`)"),
                   ("mean_of_n_decoded", "mean of the samples, codes alone"), ("copy_last", "copy last frame"))
# Rows of the run at temperature 1 (copy-last is the same as above)
PREDICTION_ROWS_T1 = (("mean_of_n", "mean of the samples, T = 1"), ("generated", "single sample, T = 1"),
                      ("best_of_n", "best of N, T = 1"))
# Rows of the run whose top codes come from the top prior instead of the context reader (`--no-reader`)
PREDICTION_ROWS_PRIOR = (("mean_of_n", "mean of the samples, top prior"), ("generated", "single sample, top prior"),
                         ("best_of_n", "best of N, top prior"), ("generated_top", "top prior's top + true bottom"))


def _prediction_rows(table: dict[str, Any], rows: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"| {label} | " + " | ".join(f"{v:.1f}" for v in table["psnr_per_frame"][key])
            + f" | {table['mean_psnr'][key]:.2f} | {table['mean_ssim'][key]:.3f} |"
            for key, label in rows if key in table["psnr_per_frame"]]


SHAPE_ROWS = (("mean_of_n", "mean of the samples (default)"), ("generated", "single sample"),
              ("generated_top", "sampled top + true bottom"),
              ("mean_of_n_warp", "mean of the samples, warped (`--anchor warp`)"),
              ("mean_of_n_decoded", "mean of the samples, codes alone"), ("copy_last", "copy last frame"))
SHAPE_ROWS_T1 = (("mean_of_n", "mean of the samples, T = 1"), ("generated", "single sample, T = 1"))
SHAPE_ROWS_PRIOR = (("mean_of_n", "mean of the samples, top prior"), ("generated", "single sample, top prior"))
CHANCE_ROW = (("another_video", "another held-out video's last context frame (chance)"),)
# Identity rather than place: a shape also counts as kept within this many pixels a frame of its true place (the
# shapes move 1-3 pixels a frame), for these readings
IDENTITY_STRAY = 1
IDENTITY_READINGS = ("mean_of_n", "copy_last", "another_video")


def _shape_rows(shapes: dict[str, Any], rows: tuple[tuple[str, str], ...], psnr: bool = True) -> list[str]:
    percent = lambda v: "n/a" if math.isnan(v) else f"{100 * v:.0f}%"
    finite = lambda values: [v for v in values if not math.isnan(v)]
    mean = lambda values: sum(finite(values)) / max(len(finite(values)), 1)
    return [f"| {label} | " + " | ".join(percent(v) for v in shapes[key]["kept"])
            + f" | {percent(mean(shapes[key]['kept']))} |" + (f" {mean(shapes[key]['psnr']):.2f} |" if psnr else "")
            for key, label in rows if key in shapes]


def _identity_table(near: dict[str, Any] | None, prior: dict[str, Any] | None = None) -> list[str]:
    """The identity table of the default prediction's readings (`near`), and the top prior's mean of the samples
    (`prior`, `--no-reader`) where it was measured."""
    if near is None:
        return []
    stray = near["stray"]
    first = near["frame"][0]
    return [f"Kept as themselves rather than in place: a shape also counts as kept in the t-th predicted frame "
            f"(t = 1 in frame {first}) if the prediction holds it within {'' if stray == 1 else f'{stray} × '}t "
            f"pixels each way of its true place ({stray} pixel{'s' if stray > 1 else ''} a frame; the shapes move "
            "1-3), so that a shape moved too "
            "slowly, too fast or not at all counts, and one dissolved into the background does not "
            "(`shape_scores(..., stray)`). Share of the shapes kept:", "",
            "| decoding | " + " | ".join(str(f) for f in near["frame"]) + " | mean |",
            "|---|" + "---|" * (len(near["frame"]) + 1),
            *_shape_rows(near, SHAPE_ROWS, psnr=False),
            *(_shape_rows(prior, SHAPE_ROWS_PRIOR[:1], psnr=False) if prior else []),
            *_shape_rows(near, CHANCE_ROW, psnr=False), ""]


def _dB(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _shape_count(pred: dict[str, Any]) -> str:
    counts = sorted(set(pred["shapes"]["shapes"]))
    return f"{counts[0]} shapes" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} shapes, by frame"


def _top_changed(levels: dict[str, Any]) -> list[str]:
    if levels.get("top_changed") is None:
        return []
    return [f"Top codes unlike the code in their place one latent frame before: {100 * levels['top_changed']:.1f}% "
            "(what the top prior has to predict beyond repeating the last latent frame).", ""]


CONTINUATION_ROWS = (("sampled", "the top prior's samples (as prediction draws them)"),
                     ("repeat", "the last context latent frame repeated (the line to beat)"),
                     ("teacher_forced", "the top prior teacher-forced (reads the true codes of the frame itself)"),
                     ("another_clip", "another clip's codes (chance)"))


def _continuation_table(scores: dict[str, Any] | None) -> list[str]:
    if scores is None:
        return []
    context, rows = scores["context"], scores["rows"]
    frames = len(rows["repeat"]["distance"])
    lines = [f"How near the top prior continues the top codes of {scores['clips']} held-out validation clips from "
             f"their first {context} latent frames (the prediction's context), sampling at temperature "
             f"{scores['temperature']:g}: the mean squared distance between the codebook vectors of the produced and "
             "the true codes (0 when equal), and in brackets the share of codes equal "
             "(`continuation_scores`; `benchmarks/bench_top_codes.py` has more rows):", "",
             "| produced by | " + " | ".join(f"latent frame {context + i}" for i in range(frames)) + " |",
             "|---|" + "---|" * frames]
    for key, label in CONTINUATION_ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{d:.4f} ({100 * e:.0f}%)" for d, e in
                                                   zip(rows[key]["distance"], rows[key]["equal"], strict=True)) + " |")
    return [*lines, ""]


def _reader_line(figures: dict[str, Any]) -> list[str]:
    reader = figures.get("reader")
    if reader is None:
        return []
    return [f"Context reader (`vqvid train reader`, {reader['steps']} steps): {reader['bits_per_code']:.3f} bits per "
            "code on the top codes after the context of its validation clips, read off the context's frames "
            f"({100 * reader['accuracy']:.1f}% of its most likely codes right). The top prior's bits above are "
            "over all four latent frames, each code given the true codes before it.", ""]


def _top_from(pred: dict[str, Any]) -> str:
    if "top_prior" not in pred:
        return ""
    if set(pred.get("top_codes_from", [])) == {"reader"}:
        temperature = pred.get("reader_temperature")
        source = "the context reader" + (", its most likely codes (`--reader-temperature 0`; the rows at T = 1 "
                                         "draw them at 1)" if temperature == 0 else f" at temperature {temperature:g}")
        if pred.get("reader_passes") == 2:
            source += (", read twice (`--reader-passes 2`: frames 4-11, 8-11 decoded from the first reading, for "
                       "the top codes of frames 12-15)")
    else:
        source = "the top prior"
    return (f"The top codes after the context come from {source}, as `vqvid predict` takes them by default; the "
            "rows marked 'top prior' sample them from the top prior instead (`--no-reader`), the same clips and "
            "seed. ")


def _overrides(report: dict[str, Any]) -> str:
    changes = report.get("vqvae_overrides") or []
    return " (its VQ-VAE with " + ", ".join(f"`{change}`" for change in changes) + ")" if changes else ""


def render_report(report: dict[str, Any]) -> str:
    figures, seconds = report["figures"], report["seconds"]
    rec, lv, pred = figures["reconstruction"], figures["levels"], figures["prediction"]
    lines = [
        "# vqvid demo report",
        "",
        "Synthetic moving shapes, `tiny` preset" + _overrides(report) + ", trained on this machine's CPU. Figures",
        "are measured on held-out clips that were written to MP4 and read back.",
        "",
        "## Reconstruction (held-out clips)",
        "",
        "| PSNR (dB) | SSIM | codes used: top | codes used: bottom | code bits / clip | raw bits / clip |"
        " reduction |",
        "|---|---|---|---|---|---|---|",
        f"| {rec['psnr']:.2f} | {rec['ssim']:.4f} | {100 * rec['codebook_usage']['top']:.1f}% | "
        f"{100 * rec['codebook_usage']['bottom']:.1f}% | {rec['code_bits']:,} | {rec['raw_bits']:,} | "
        f"{100 * rec['reduction']:.1f}% |",
        "",
        "![input | reconstruction](reconstruction.gif)",
        "",
        "What each level carries (PSNR in dB; the top swap decodes each clip's bottom codes with another clip's",
        "top codes, and costs nothing when the top level carries nothing):",
        "",
        "| both levels | top only | bottom only | another clip's top | top swap costs | mean colour |",
        "|---|---|---|---|---|---|",
        f"| {lv['both']:.2f} | {lv['top_only']:.2f} | {lv['bottom_only']:.2f} | {_dB(lv['top_swap'])} | "
        f"{_dB(lv['top_swap_cost'])} | {lv['mean_colour']:.2f} |",
        "",
        *_top_changed(lv),
        "Levels (input | top only | bottom only):",
        "",
        "![levels](levels.gif)",
        "",
        "## Priors (bits per code on held-out codes; a uniform code costs 9 bits)",
        "",
        "| top prior | bottom prior (given top) |",
        "|---|---|",
        f"| {figures['prior_bits_per_code']['top']:.3f} | {figures['prior_bits_per_code']['bottom']:.3f} |",
        "",
        *_continuation_table(figures.get("top_continuation")),
        *_reader_line(figures),
        "## Prediction (frames 8-15 of held-out clips from frames 0-7)",
        "",
        f"{pred['samples']} futures sampled per clip (temperature {pred['temperature']:g}; the rows marked T = 1 "
        "sample the same clips from the priors' own distribution). The prediction "
        "`vqvid predict` shows by default "
        "is their pixel mean; best of N takes, per clip, the sample closest to the truth (an oracle: the usual "
        "figure of stochastic video prediction); the sampled top with the true bottom codes shows what the "
        "sampled top codes got right. " + _top_from(pred)
        + ("Every predicted frame is anchored on the last context frame (`--anchor last`): where its decoding has "
           "not changed since that frame, it gets back that frame's known reconstruction error; the row 'codes "
           "alone' is the mean of the samples as the codes decode them (`--anchor none`). The row 'warped' shows "
           "the last context frame moved along each sample's decoding (`--anchor warp`): it scores higher, but "
           "about as high with priors trained for 100 steps (docs/prediction.md), so it is not the default. "
           if pred.get("anchor") == "last" else "")
        + "Mean PSNR (dB) and SSIM over the predicted frames:",
        "",
        "| decoding | " + " | ".join(str(f) for f in pred["psnr_per_frame"]["frame"]) + " | mean PSNR | mean SSIM |",
        "|---|" + "---|" * (len(pred["psnr_per_frame"]["frame"]) + 2),
        *_prediction_rows(pred, PREDICTION_ROWS),
        *(_prediction_rows(pred["temperature_1"], PREDICTION_ROWS_T1) if "temperature_1" in pred else []),
        *(_prediction_rows(pred["top_prior"], PREDICTION_ROWS_PRIOR) if "top_prior" in pred else []),
        "",
        "Do the shapes keep their identity? The generator knows every shape of the held-out clips; a shape "
        "counts as kept in a frame when, inside its true outline, the prediction is nearer the shape than the "
        "scene without it (in its place and colours rather than dissolved into what lies behind it). Share of "
        f"the shapes kept per predicted frame ({_shape_count(pred)}), and PSNR (dB) inside the outlines:",
        "",
        "| decoding | " + " | ".join(str(f) for f in pred["shapes"]["frame"]) + " | mean | PSNR in shapes |",
        "|---|" + "---|" * (len(pred["shapes"]["frame"]) + 2),
        *_shape_rows(pred["shapes"], SHAPE_ROWS),
        *(_shape_rows(pred["temperature_1"]["shapes"], SHAPE_ROWS_T1) if "temperature_1" in pred else []),
        *(_shape_rows(pred["top_prior"]["shapes"], SHAPE_ROWS_PRIOR) if "top_prior" in pred else []),
        *_shape_rows(pred["shapes"], CHANCE_ROW),
        "",
        *_identity_table(pred.get("shapes_near"), pred.get("top_prior", {}).get("shapes_near")),
        f"Sampling speed: {pred['positions_per_second']:,.0f} code positions per second "
        f"({pred.get('method', 'incremental')} sampler).",
        "",
        "![original | generated top with original bottom | mean of the samples | four samples](predict.gif)",
        "",
        "## Compression (a held-out video, real .vqv file sizes)",
        "",
        f"The file is {100 * figures['compression']['share_of_fixed_width']:.1f}% of the same codes at fixed width "
        f"(9 bits per code): {figures['compression']['bits_per_code']:.2f} bits per code, "
        f"{figures['compression']['bits_per_pixel']:.4f} bits per pixel.",
        "",
        "| method | setting | bytes | bits/pixel | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|---|",
        *[f"| {p['method']} | {p['setting']} | {p['bytes']:,} | {p['bits_per_pixel']:.4f} | {p['psnr']:.2f} | "
          f"{p['ssim']:.4f} |" for p in figures["compression"]["rd"]],
        "",
        "x265 and, on some CPUs, x264 code these 64-pixel-wide frames to files up to about 2% apart from run to "
        "run (README, \"x264 / x265\"); their rows move in their last digits between demos, vqvid's do not.",
        "",
        "![PSNR against bits per pixel](rd.png)",
        "",
        "## Time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {value:.1f} |" for name, value in seconds.items()],
    ]
    if report.get("fast"):
        lines += ["", "_Run with --fast: smoke-test sizes, the figures above mean nothing._"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqvid.commands import options
    from vqvid.files import write_text

    demo = Demo(args.out, args.fast, args.vqvae_steps, args.vqvae_set)
    try:
        options.at_least(args.vqvae_steps, 1, "--vqvae-steps")
        check_out(args.out)
        demo.check_vqvae_config()
    except ValueError as error:
        print(f"vqvid demo: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / DEMO_MARKER, "written by `vqvid demo`: a demo run again into this folder replaces "
                                       "its runs\n")
    demo.stage("data", demo.data)
    demo.stage("vqvae", demo.vqvae)
    demo.stage("reconstruct", demo.reconstruct)
    demo.stage("extract", demo.extract)
    demo.stage("priors", demo.priors)
    demo.stage("reader", demo.reader)
    demo.stage("export", demo.export)
    demo.stage("predict", demo.predict)
    demo.stage("compress", demo.compress)
    demo.report()
    return 0
