"""vqvid on real video: the `tiny` pipeline trained on three opencv-doc sample videos, measured on two others.

The five sample videos of Debian's `opencv-doc` package (see `vqvid.data.samples`; fetched with
`apt-get download opencv-doc` + `dpkg -x` into the cache folder unless `--videos DIR` holds them) are split
once, by name: train on vtest.avi (people walking, fixed camera), Megamind.avi (animation) and box.mp4
(a hand-held box on a desk); hold out cup.mp4 (a hand-held cup) and tree.avi (a tree, 68 frames of a
dropped-frame AVI). Every figure is on the held-out pair; nothing of it is seen in training, and the runs
keep their last checkpoint whatever the held-out figures say.

Stages, each the same code as its `vqvid` command (through that command's `main(argv)`):
  1. prepare      `vqvid prepare` of the training videos: 16×64×64 clips, stride 8, one sequential pass
  2. vqvae        `vqvid train vqvae --preset tiny` on that store (its validation: a held-out tail of it)
  3. reconstruct  `vqvid reconstruct` of every whole held-out clip: PSNR, SSIM
  4. extract      `vqvid extract`: codes of the training store and of the held-out videos
  5. priors       `vqvid train prior --preset tiny`, top then bottom; bits per code on the held-out codes
  6. reader       `vqvid train reader --preset tiny` on the training store (its validation: a held-out tail)
  7. export       `vqvid export`, the reader included
  8. predict      `vqvid predict`: frames 8–15 of held-out clips from frames 0–7, against copy-last-frame; the
                  top codes from the context reader (the default), and from the top prior (`--no-reader`)
  9. compress     `vqvid compress` of tree.avi (the whole file), and `vqvid rd` against x264/x265 (medium,
                  CRF 18–51) on the same frames: the first 8 whole clips of each held-out video

    python benchmarks/bench_real.py [--videos DIR] [--out DIR] [--vqvae-steps N] [--prior-steps N]
           [--reader-steps N] [--fast]

Writes benchmarks/results/real.json (not with --fast, whose smoke-test figures mean nothing) and prints a
table; the run's files stay in --out (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_file import write_results

from vqvid.commands.demo import Demo
from vqvid.data.samples import fetch_sample_videos, missing_sample_videos, sample_videos_dir

TRAIN = ("vtest.avi", "Megamind.avi", "box.mp4")
HELD_OUT = ("cup.mp4", "tree.avi")
RD_CLIPS = 8  # whole clips per held-out video in the RD comparison
CRFS = ("18", "23", "28", "33", "38", "43", "51")


class RealVideo(Demo):
    """The demo's stages on the sample videos; `fast` shrinks them to a smoke test, `vqvae_steps`, `prior_steps`
    and `reader_steps` (None: the `tiny` preset's) shorten training."""

    prior_steps: int | None = None
    reader_steps: int | None = None

    def run_command(self, name: str, argv: list[str]) -> None:
        steps = {"prior": self.prior_steps, "reader": self.reader_steps}.get(argv[0]) if name == "train" else None
        if steps and not self.fast:
            argv = [*argv, "--max-steps", str(steps), f"train.val_every={steps}"]
        super().run_command(name, argv)

    def data(self) -> None:
        split = self.out / "data"
        for part, names in (("train", TRAIN), ("test", HELD_OUT)):
            (split / part).mkdir(parents=True, exist_ok=True)
            for name in names:
                link = split / part / name
                if not link.exists():
                    link.symlink_to(self.videos / name)
        self.train_dir, self.test_dir = split / "train", split / "test"
        self.test_videos = [self.test_dir / name for name in HELD_OUT]
        self.store = self.out / "train_store"
        self.run_command("prepare", [str(self.train_dir), "--out", str(self.store), "--frames", "16",
                                     "--stride", "8", "--size", "64", "--quiet"])
        self.figures["data"] = {"train": list(TRAIN), "held_out": list(HELD_OUT), "clip": "16×64×64, stride 8"}

    @property
    def train_source(self) -> str:
        return str(self.store)

    @property
    def reader_source(self) -> str:
        return str(self.store)

    def vqvae(self) -> None:
        argv = ["vqvae", "--data", self.train_source, "--preset", "tiny", "--out", str(self.out / "vqvae"),
                "--no-progress"]
        if self.fast:
            argv += ["--max-steps", "10", "train.val_every=10", "train.num_workers=0", "model.channels=16",
                     "model.res_channels=8"]
        elif self.vqvae_steps:
            argv += ["--max-steps", str(self.vqvae_steps), f"train.val_every={self.vqvae_steps}"]
        self.run_command("train", argv)
        self.vqvae_ckpt = self.out / "vqvae" / "checkpoints" / "last.ckpt"

    def reconstruct(self) -> None:
        figures = self.out / "reconstruction.json"
        self.run_command("reconstruct", ["--vqvae", str(self.vqvae_ckpt), str(self.test_dir), "-o",
                                         str(self.out / "reconstruction.gif"), "--json", str(figures),
                                         "--max-clips", "1000"])
        self.figures["reconstruction"] = json.loads(figures.read_text())

    def extract(self) -> None:
        self.codes = {"train": self.out / "codes" / "train", "val": self.out / "codes" / "held_out"}
        for source, out in ((self.train_source, self.codes["train"]), (str(self.test_dir), self.codes["val"])):
            self.run_command("extract", ["--vqvae", str(self.vqvae_ckpt), "--data", source, "--out", str(out),
                                         "--batch-size", "8", "--no-progress"])

    def predict(self) -> None:
        """The default prediction (the top codes from the context reader), then the same clips and seed with the
        top codes from the top prior (`--no-reader`)."""
        mean = lambda values: sum(values) / len(values)
        means = lambda table: {key: mean(values) for key, values in table.items() if key != "frame"}
        results = {}
        for name, extra in (("predict", []), ("predict_prior", ["--no-reader"])):
            figures = self.out / f"{name}.json"
            self.run_command("predict", [
                "--model", str(self.model_dir), str(self.test_dir), "--context", "8", "--frames", "16",
                "--samples", "2" if self.fast else "8", "--clips", "2" if self.fast else "8", "-o",
                str(self.out / f"{name}.gif"), "--json", str(figures), "--seed", "0", *extra])
            results[name] = json.loads(figures.read_text())
        result, prior = results["predict"], results["predict_prior"]
        self.figures["prediction"] = {
            "context_frames": 8, "generated_frames": 8, "clips": result["clips"], "samples": result["samples"],
            "decoding": result["decoding"], "top_codes_from": result["top_codes_from"],
            "psnr_per_frame": result["psnr_per_frame"], "ssim_per_frame": result["ssim_per_frame"],
            "mean_psnr": means(result["psnr_per_frame"]), "mean_ssim": means(result["ssim_per_frame"]),
            "top_prior": {"top_codes_from": prior["top_codes_from"], "mean_psnr": means(prior["psnr_per_frame"]),
                          "mean_ssim": means(prior["ssim_per_frame"])}}

    def compress(self) -> None:
        video, vqv, figures = self.test_dir / "tree.avi", self.out / "tree.vqv", self.out / "compress.json"
        self.run_command("compress", ["--model", str(self.model_dir), str(video), "-o", str(vqv), "--json",
                                      str(figures), "--no-progress"])
        self.figures["compression"] = json.loads(figures.read_text())
        rd_path = self.out / "rd.json"
        self.run_command("rd", ["--model", str(self.model_dir), *map(str, self.test_videos), "-o",
                                str(self.out / "rd.png"), "--json", str(rd_path), "--max-clips",
                                "1" if self.fast else str(RD_CLIPS), "--crf", *(("28", "51") if self.fast else CRFS)])
        self.figures["rd"] = json.loads(rd_path.read_text())


def rd_rows(points: list[dict]) -> list[str]:
    return [f"| {p['method']} | {p['setting']} | {p['bytes']:,} | {p['bits_per_pixel']:.4f} | {p['psnr']:.2f} | "
            f"{p['ssim']:.4f} |" for p in points]


def summary(figures: dict, seconds: dict) -> str:
    rec, bits, pred, comp = (figures["reconstruction"], figures["prior_bits_per_code"], figures["prediction"],
                             figures["compression"])
    lines = [
        f"held-out reconstruction ({rec['clips']} clips): PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.4f}",
        f"held-out bits per code: top {bits['top']:.3f}, bottom {bits['bottom']:.3f} (9 for a uniform code)",
        "prediction, frames 8-15 from 0-7, mean PSNR (dB) / SSIM: " + ", ".join(
            f"{key} {pred['mean_psnr'][key]:.2f} / {pred['mean_ssim'][key]:.3f}" for key in pred["mean_psnr"]),
        "the same with the top codes from the top prior (--no-reader): " + ", ".join(
            f"{key} {pred['top_prior']['mean_psnr'][key]:.2f} / {pred['top_prior']['mean_ssim'][key]:.3f}"
            for key in ("mean_of_n", "generated", "best_of_n")),
        f"tree.avi as .vqv: {comp['bytes']:,} bytes, {comp['bits_per_code']:.3f} bits/code, "
        f"{100 * comp['bytes'] / comp['fixed_width_bytes']:.1f}% of fixed-width codes, "
        f"{comp['bits_per_pixel']:.4f} bits/pixel",
        "",
        "| method | setting | bytes | bits/pixel | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|---|",
        *rd_rows(figures["rd"]),
        "",
        "seconds: " + ", ".join(f"{name} {value:.0f}" for name, value in seconds.items()),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, help="folder holding the five sample videos (default: "
                        f"{sample_videos_dir()}, fetched there if missing)")
    parser.add_argument("--deb", type=Path, help="an opencv-doc .deb to unpack instead of downloading one")
    parser.add_argument("--out", type=Path, help="keep the run's files here (default: a temporary folder)")
    parser.add_argument("--vqvae-steps", type=int, help="VQ-VAE training steps (default: the tiny preset's 800)")
    parser.add_argument("--prior-steps", type=int, help="steps of each prior (default: the tiny preset's)")
    parser.add_argument("--reader-steps", type=int, help="steps of the context reader (default: the tiny preset's)")
    parser.add_argument("--fast", action="store_true", help="smoke-test sizes; writes no results file")
    args = parser.parse_args()

    if args.videos is not None:
        if missing_sample_videos(args.videos):
            print(f"bench_real: --videos {args.videos}: missing {', '.join(missing_sample_videos(args.videos))}",
                  file=sys.stderr)
            return 2
        videos = args.videos
    else:
        try:
            videos = fetch_sample_videos(deb=args.deb)
        except RuntimeError as error:
            print(f"bench_real: cannot get the sample videos ({error}); pass --videos DIR", file=sys.stderr)
            return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="vqvid-bench-real-"))
    out.mkdir(parents=True, exist_ok=True)
    bench = RealVideo(out, args.fast, args.vqvae_steps)
    bench.prior_steps, bench.reader_steps = args.prior_steps, args.reader_steps
    bench.videos = videos.resolve()
    start = time.perf_counter()
    try:
        for name in ("data", "vqvae", "reconstruct", "extract", "priors", "reader", "export", "predict", "compress"):
            bench.stage(name, getattr(bench, name))
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    bench.seconds["total"] = round(time.perf_counter() - start, 1)
    print("\n" + summary(bench.figures, bench.seconds))
    if not args.fast:
        command = " ".join(["python benchmarks/bench_real.py", *(["--videos", "DIR"] if args.videos else []),
                            *(["--vqvae-steps", str(args.vqvae_steps)] if args.vqvae_steps else []),
                            *(["--prior-steps", str(args.prior_steps)] if args.prior_steps else []),
                            *(["--reader-steps", str(args.reader_steps)] if args.reader_steps else [])])
        write_results("real", torch.get_num_threads(), command=command, train=list(TRAIN),
                      held_out=list(HELD_OUT), figures=bench.figures, seconds=bench.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
