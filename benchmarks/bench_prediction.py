"""How prediction scales with prior training: a learning curve on the demo's held-out clips.

Trains the `tiny` top and bottom priors once each on the codes of a finished `vqvid demo` (its VQ-VAE, its
training and validation code stores), saving checkpoints at every budget, and at each budget measures:
- both priors' bits per code on the held-out validation codes;
- frames 8-15 of the demo's held-out videos predicted from frames 0-7 (`vqvid predict --anchor warp`, N samples
  per clip at its default temperature): mean PSNR and SSIM of the default decoding (the pixel mean of the N
  decoded samples, anchored in place on the last context frame), of the same mean with the last context frame
  warped along each sample (`--anchor warp`), of single samples and of the best of the N samples per clip (both
  warped), and of the mean as the codes alone decode it (not anchored); copy-last-frame as the line to beat;
- whether the shapes keep their identity: the share of the held-out clips' shapes still in their place and
  colours over frames 8-15 (`vqvid.commands.demo.held_out_shape_scores`), for each of these but best of N; and,
  for the default and copy-last, the share kept as themselves (within t pixels of their place in the t-th
  predicted frame, as the demo report's second shape table scores them), over frames 8-15 and in frame 15.

Where the demo has a context reader (`demo_out/reader`), each budget's model folder has it too, so the default
decoding is `vqvid predict`'s own: the top codes after the context read off the context's frames, the bottom
prior sampling given them (the top prior then enters only its bits per code); `--no-reader`
measures the top prior's path instead, as the curves committed before the reader did. `--train bottom` (or
`top`) trains that prior alone along the budgets and keeps the demo's own other one: with the reader, the
bottom prior is the one the default decoding's shapes depend on. `--prior-set KEY=VALUE ...` trains the priors
with that config in place of the `tiny` preset's (`model.attention=true model.n_blocks=4`). `--videos N`
predicts N held-out videos of the demo's generator (2 clips each; the demo's own are the first of them) instead
of the demo's own 4.

The budgets are checkpoints of one run per prior whose learning rate anneals (cosine) to 0 at the largest
budget, so the smaller budgets are not what a run of that length would reach (it would anneal sooner): read
them as a lower bound.

    python benchmarks/bench_prediction.py [--demo demo_out] [--budgets 100 200 400 800 1600 3200] [--samples 8]
           [--train both|top|bottom] [--prior-set KEY=VALUE ...] [--no-reader] [--videos N] [--keep DIR]
           [--tag TAG]
    python benchmarks/bench_prediction.py --replot [--tag TAG]   # redraw the plot from the results JSON
    python benchmarks/bench_prediction.py --levels [--demo demo_out] [--model DIR] [--videos N]
           [--temperature T] [--bottom-temperature T] [--top-k K]

`--levels` trains nothing: on the demo's own model (or `--model`, another model folder of the demo's VQ-VAE) it
decodes the same samples with one level replaced by the truth or left out, which tells which prior loses what
(the top codes from the top prior, even where the model folder has a context reader; the rows of the reader's
top codes sample the bottom codes again given them). Every row scores the shapes in place and as themselves
(within t pixels of their place in the t-th predicted frame, the demo report's second shape table).
Rows that use a true level know part of the future; they diagnose, they do not predict. It also prints how near
the sampled top codes of frames 8-15, and the context's last latent frame of them repeated, come to the whole
clip's: the share equal, and the codebook distance where the generator's shapes are and elsewhere; and the shapes
kept by the sample of each clip whose top codes lie nearest the truth, against the farthest. `--videos N`
measures on N held-out videos of the demo's generator (2 clips each) instead of the demo's own 4.

The priors train on Lightning's default accelerator (a GPU where there is one) and `vqvid predict` samples on the
CPU, so the demo's own figures can be extended on a GPU machine from a CPU demo's folder: its `codes`, `data` and
`vqvae/checkpoints` are all this needs. `--keep DIR` keeps the priors' runs and a model folder per budget
(`DIR/model_<steps>`, for `--levels --model`) instead of deleting them; `--tag TAG` writes
results/prediction_TAG.json (with `--levels`, prediction_levels_TAG.json) and docs/prediction_curve_TAG.png,
leaving the committed results as they are.

Needs a finished `make demo` (`--demo`); without one it says so and writes nothing. Writes
benchmarks/results/prediction.json and docs/prediction_curve.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from results_file import write_results

from vqvid.commands.demo import IDENTITY_STRAY, held_out_shape_scores, mean_of_n_scores, write_held_out_videos
from vqvid.commands.predict import DEFAULT_READER_TEMPERATURE, DEFAULT_TEMPERATURE

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "prediction_curve.png"
CONTEXT, FRAMES = 8, 16  # frames 8-15 of the held-out clips predicted from frames 0-7
# `vqvid predict --anchor warp`'s tables, and the default (`--anchor last`) of the same samples as mean_of_n_last
DECODINGS = {"mean_of_n_last": "default: mean of N, anchored in place", "mean_of_n": "mean of N, warped",
             "best_of_n": "best of N, warped", "generated": "single sample, warped",
             "mean_of_n_decoded": "mean of N, codes alone", "copy_last": "copy last frame"}
SHAPE_DECODINGS = ("mean_of_n_last", "mean_of_n", "generated", "mean_of_n_decoded", "copy_last")


def _run(command: str, argv: list[str]) -> None:
    import importlib

    code = importlib.import_module(f"vqvid.commands.{command}").main(argv)
    if code:
        raise SystemExit(f"bench_prediction: `vqvid {command}` failed with exit code {code}")


def _train(level: str, demo: Path, out: Path, budgets: list[int], overrides: list[str]) -> float:
    """One `tiny` prior run to the largest budget, a checkpoint every smallest budget, with the `overrides`
    (KEY=VALUE, as `vqvid train prior` takes them); returns seconds."""
    step = min(budgets)
    if any(b % step for b in budgets):
        raise SystemExit(f"--budgets must be multiples of the smallest, got {budgets}")
    start = time.perf_counter()
    _run("train", ["prior", "--level", level, "--codes", str(demo / "codes" / "train"), "--val-codes",
                   str(demo / "codes" / "val"), "--preset", "tiny", "--out", str(out), "--max-steps",
                   str(max(budgets)), f"train.val_every={step}", "--no-progress", *overrides])
    return time.perf_counter() - start


def _clips(data: Path) -> int:
    """How many FRAMES-frame clips `vqvid predict` reads from the held-out videos in `data`."""
    from vqvid.data import ClipSpec
    from vqvid.data.inputs import open_prediction_input

    return len(open_prediction_input(str(data), ClipSpec(frames=FRAMES, stride=FRAMES, size=64), FRAMES)[0])


def _held_out(demo: Path, videos: int | None, folder: Path) -> tuple[Path, int]:
    """The held-out videos to predict and their clip count: the demo's own, or `videos` of the demo's generator
    written into `folder` (the demo's own are the first of them)."""
    if not videos:
        return demo / "data", _clips(demo / "data")
    write_held_out_videos(folder, videos)
    return folder, _clips(folder)


def _measure(demo: Path, runs: dict[str, Path], budget: int, samples: int, clips: int, work: Path,
             data: Path, reader: Path | None) -> dict:
    """One budget's point: the runs' checkpoints at `budget` (a prior with no run in `runs` is the demo's own),
    exported with the context `reader` checkpoint where one is given, predicting the held-out clips in `data`."""
    from vqvid.data.codes import CodeDataset
    from vqvid.persistence import load_prior
    from vqvid.sampling.predict import anchor_on_context
    from vqvid.training.prior import bits_per_code

    checkpoints = {level: runs[level] / "checkpoints" / f"step={budget}.ckpt" if level in runs
                   else _demo_prior(demo, level) for level in ("top", "bottom")}
    bits = {level: bits_per_code(load_prior(path, level).model, CodeDataset(demo / "codes" / "val", level))
            for level, path in checkpoints.items()}
    model = work / f"model_{budget}"
    _run("export", ["--vqvae", str(demo / "vqvae" / "checkpoints" / "last.ckpt"), "--top",
                    str(checkpoints["top"]), "--bottom", str(checkpoints["bottom"]), "--out", str(model),
                    *(["--reader", str(reader)] if reader is not None else [])])
    figures, saved = work / f"predict_{budget}.json", work / f"predict_{budget}.pt"
    _run("predict", ["--model", str(model), str(data), "--context", str(CONTEXT), "--frames", str(FRAMES),
                     "--samples", str(samples), "--clips", str(clips), "-o",
                     str(work / f"predict_{budget}.gif"),
                     "--json", str(figures), "--seed", "0", "--no-progress", "--device", "cpu",
                     "--save-samples", str(saved), "--anchor", "warp"])
    result, samples = json.loads(figures.read_text()), torch.load(saved, weights_only=True)
    shapes = held_out_shape_scores(samples)
    # the same samples anchored in place (`vqvid predict`'s default, `--anchor last`), mean of N
    in_place = anchor_on_context(samples["decoded"], samples["clips"], CONTEXT)
    frames, shapes["mean_of_n_last"] = mean_of_n_scores(samples, in_place)
    for table in ("psnr_per_frame", "ssim_per_frame"):
        result[table]["mean_of_n_last"] = frames[table]
    # the shapes kept as themselves (the demo report's second shape table) by the default and by copy-last
    near = held_out_shape_scores({**samples, "samples": in_place, "decoded": None}, stray=IDENTITY_STRAY,
                                 only=("mean_of_n", "copy_last"))
    near = {"mean_of_n_last": near["mean_of_n"]["kept"], "copy_last": near["copy_last"]["kept"]}
    mean = lambda values: sum(values) / len(values)
    return {
        "steps": budget, "bits_per_code": bits,
        "mean_psnr": {k: mean(result["psnr_per_frame"][k]) for k in DECODINGS},
        "mean_ssim": {k: mean(result["ssim_per_frame"][k]) for k in DECODINGS},
        "shapes_kept": {k: mean(shapes[k]["kept"]) for k in SHAPE_DECODINGS},
        "shapes_kept_last_frame": {k: shapes[k]["kept"][-1] for k in SHAPE_DECODINGS},
        "shapes_near": {k: mean(v) for k, v in near.items()},
        "shapes_near_last_frame": {k: v[-1] for k, v in near.items()},
    }


def _demo_prior(demo: Path, level: str) -> Path:
    return demo / f"prior_{level}" / "checkpoints" / "last.ckpt"


LEVEL_ROWS = {
    "anchored": "the prediction, anchored in place (default)",
    "warped": "the prediction, frame 7 warped",
    "sampled": "sampled top, sampled bottom (codes alone)",
    "sampled_top_only": "sampled top, decoded alone",
    "sampled_top_true_bottom": "sampled top, true bottom",
    "true_top_sampled_bottom": "true top, bottom sampled given it",
    "true_top_anchored": "true top, bottom sampled, anchored",
    "reader_top_sampled_bottom": "reader's top, bottom sampled given it",
    "reader_top_anchored": "reader's top, bottom sampled, anchored",
    "copied_top_sampled_bottom": "top of frames 4-7 repeated, bottom sampled",
    "nearest_top_anchored": "sample with the nearest top codes, anchored",
    "farthest_top_anchored": "sample with the farthest top codes, anchored",
    "true_top_only": "true top, decoded alone",
    "reconstruction": "true top, true bottom (reconstruction)",
}


@torch.no_grad()
def levels(demo: Path, samples: int, model: Path, data: Path, temperature: float,
           bottom_temperature: float | None = None, top_k: int | None = None) -> dict:
    """PSNR and shapes kept over frames 8-15 of every held-out clip in `data` for each row of LEVEL_ROWS: one
    `predict` of the model folder `model` at `temperature` (and `bottom_temperature`, `top_k`), its samples
    decoded as they are and with a level swapped for the truth or left out; the bottom prior also samples given
    the true top codes, and given the context's last latent frame of top codes repeated (what the top prior must
    beat in code space), and, where the folder has a context reader of CONTEXT frames, given its top codes as
    `vqvid predict` draws them by default (`DEFAULT_READER_TEMPERATURE`: its most likely codes). Rows named
    "anchored" anchor the last context frame in place, as `vqvid predict` does by default, "warped" warps it along
    the prediction (`--anchor warp`); the others decode codes alone. Each row also has the shapes kept as
    themselves (within t pixels of their place in the t-th predicted frame, as the demo's report scores them):
    with the true top codes, what the bottom prior alone loses of them."""
    from einops import rearrange, repeat

    from vqvid.data import ClipSpec
    from vqvid.data.codes import CodeDataset
    from vqvid.data.inputs import open_prediction_input
    from vqvid.data.sources import read_clips
    from vqvid.metrics import codebook_distance
    from vqvid.models.vqvae import TIME_FACTOR
    from vqvid.persistence import load_model_folder
    from vqvid.sampling.predict import anchor_on_context, predict, warp_along_decoding
    from vqvid.training.prior import bits_per_frame

    folder = load_model_folder(model)
    vqvae = folder.vqvae.model
    dataset, _ = open_prediction_input(str(data), ClipSpec(frames=FRAMES, stride=FRAMES, size=64), FRAMES)
    clips = torch.stack(read_clips(dataset, len(dataset), "bench_prediction"))  # (B, 3, FRAMES, H, W)
    # the priors' own prediction: the top codes from the top prior even where the folder has a context reader
    prediction = predict(folder, clips, CONTEXT, FRAMES, samples=samples, temperature=temperature, seed=0, top_k=top_k,
                         bottom_temperature=bottom_temperature, progress=False, anchor="none", reader=False)
    each = lambda codes: rearrange(codes, "b s ... -> (b s) ...")
    per_clip = lambda video: rearrange(video, "(b s) ... -> b s ...", s=samples)
    decode = lambda top, bottom: per_clip(torch.cat([vqvae.decode_codes(t, b) for t, b in zip(
        top.split(1), bottom.split(1) if bottom is not None else [None] * len(top), strict=True)]))
    true = vqvae.encode(clips)
    true_top = repeat(true.top, "b ... -> (b s) ...", s=samples)
    known_top = CONTEXT // TIME_FACTOR  # latent frames of top codes the context gives (bottom: twice as many)
    # The top prior's line to beat in code space: the context's last latent frame of top codes repeated
    copied_top = each(prediction.codes.top).clone()
    copied_top[:, known_top:] = copied_top[:, known_top - 1 : known_top]

    bottom_given = lambda top: sample_bottom_given(folder, prediction, top, (
        temperature if bottom_temperature is None else bottom_temperature), top_k)
    codebook = vqvae.top_quantizer.embed
    # Per clip, the samples whose top codes of frames 8-15 lie nearest and farthest from the whole clip's (by the
    # mean codebook distance; oracles, as best of N): whether nearer top codes keep more of the shapes
    distance = (codebook[prediction.codes.top[:, :, known_top:]] - codebook[true.top[:, None, known_top:]]
                ).square().sum(-1).mean((2, 3, 4))  # (B, S)
    anchored = anchor_on_context(prediction.video, clips, CONTEXT)
    true_top_video = decode(true_top, bottom_given(true_top))
    chosen = lambda index: anchored[torch.arange(len(clips)), index][:, None]  # (B, 1, 3, F, H, W)
    videos = {
        "warped": warp_along_decoding(prediction.video, clips, CONTEXT),
        "anchored": anchored,
        "sampled": prediction.video,
        "sampled_top_only": decode(each(prediction.codes.top), None),
        "sampled_top_true_bottom": prediction.generated_top,
        "true_top_sampled_bottom": true_top_video,
        "true_top_anchored": anchor_on_context(true_top_video, clips, CONTEXT),
        "copied_top_sampled_bottom": decode(copied_top, bottom_given(copied_top)),
        "nearest_top_anchored": chosen(distance.argmin(1)),
        "farthest_top_anchored": chosen(distance.argmax(1)),
        "true_top_only": vqvae.decode_codes(true.top, None)[:, None],  # one "sample" per clip
        "reconstruction": vqvae.decode_codes(true.top, true.bottom)[:, None],
    }
    reader = folder.reader
    if reader is not None and reader.config.context == CONTEXT:  # the default's top codes, and its prediction
        reader_top = each(prediction.codes.top).clone()
        reader_top[:, known_top:] = reader.model.sample_codes(clips[:, :, :CONTEXT], DEFAULT_READER_TEMPERATURE,
                                                              generator=torch.Generator().manual_seed(0),
                                                              samples=samples)
        videos["reader_top_sampled_bottom"] = decode(reader_top, bottom_given(reader_top))
        videos["reader_top_anchored"] = anchor_on_context(videos["reader_top_sampled_bottom"], clips, CONTEXT)
    mean = lambda values: sum(values) / len(values)
    rows = {}
    for name, video in videos.items():
        psnr, shapes, near = prediction_scores(clips, video)
        rows[name] = {"psnr_mean_of_n": psnr["mean_of_n"], "psnr_single": psnr["generated"],
                      "kept_mean_of_n": mean(shapes["mean_of_n"]["kept"]),
                      "kept_single": mean(shapes["generated"]["kept"]),
                      "kept_single_frame_15": shapes["generated"]["kept"][-1],
                      "near_mean_of_n": near["mean_of_n"]["kept"], "near_single": near["generated"]["kept"]}
        if name == "warped":  # also its best of N, and copy-last, as `vqvid predict` reports them
            if samples > 1:  # per clip the sample nearest the truth (an oracle)
                rows[name]["psnr_best_of_n"] = psnr["best_of_n"]
            rows["copy_last"] = {"psnr": psnr["copy_last"], "kept": mean(shapes["copy_last"]["kept"]),
                                 "kept_frame_15": shapes["copy_last"]["kept"][-1],
                                 "near": near["copy_last"]["kept"]}
    # per predicted latent frame, the share of top codes that equal those of the whole clip's encoding
    equal = lambda top: (top[:, known_top:] == true_top[:, known_top:]).float().mean((0, 2, 3)).tolist()
    rows["top_codes_equal_truth"] = {"sampled": equal(each(prediction.codes.top)), "copied": equal(copied_top)}
    # per predicted latent frame, how far their codebook vectors lie from the whole clip's, where the shapes are
    # and elsewhere (a top code counts as a shape's when any of its pixels and frames shows one)
    cells = repeat(_shape_cells(clips, true.top.shape[2:]), "b ... -> (b s) ...", s=samples)
    near = lambda top, where: codebook_distance(top[:, known_top:], true_top[:, known_top:], codebook, where).tolist()
    rows["top_codes_distance"] = {name: {"shapes": near(top, cells), "elsewhere": near(top, ~cells)}
                                  for name, top in (("sampled", each(prediction.codes.top)), ("copied", copied_top))}
    rows["top_codes_distance"]["shape_share"] = cells.float().mean().item()
    # how well each prior predicts each latent frame of the held-out validation codes from the ones before it
    rows["bits_per_frame"] = {level: bits_per_frame(getattr(folder, level).model,
                                                    CodeDataset(demo / "codes" / "val", level))
                              for level in ("top", "bottom")}
    return rows


def prediction_scores(clips: torch.Tensor, video: torch.Tensor) -> tuple[dict, dict, dict]:
    """Frames 8-15 of `video` (B, S, 3, F, H, W), the held-out `clips`' prediction, read as `vqvid predict`
    reads its samples (mean of N, single samples, best of N, copy-last): each reading's mean PSNR, its shape
    figures in place (`held_out_shape_scores`), and the shapes kept as themselves by the mean of N, single samples
    and copy-last (with the demo report's stray)."""
    from vqvid.commands.predict import readings
    from vqvid.metrics import psnr_per_frame

    saved = {"clips": clips, "samples": video, "generated_top": None, "context": CONTEXT}
    psnr = {reading: psnr_per_frame(prediction, truth).mean().item()  # over frames 8-15 (and samples)
            for reading, (prediction, truth) in readings(clips, video, None, CONTEXT).items()}
    near = held_out_shape_scores(saved, stray=IDENTITY_STRAY, only=("mean_of_n", "generated", "copy_last"))
    return psnr, held_out_shape_scores(saved), near


def sample_bottom_given(folder, prediction, top: torch.Tensor, temperature: float, top_k: int | None = None
                        ) -> torch.Tensor:
    """The bottom prior's samples (B·S, T'', H'', W'') after the context's own bottom codes of `prediction` (a
    `vqvid.sampling.predict.predict` of frames 8-15 with S samples per clip), given the top codes `top` (B·S, T',
    H', W'): what the prediction would decode to had its top codes been `top`."""
    from einops import rearrange

    from vqvid.models.vqvae import TIME_FACTOR
    from vqvid.sampling import sample

    context_bottom = rearrange(prediction.codes.bottom, "b s ... -> (b s) ...").clone()
    start = context_bottom[0, : 2 * (CONTEXT // TIME_FACTOR)].numel()  # the positions of one sequence's context
    return sample(folder.bottom.model, context_bottom, condition=top, start=start, temperature=temperature,
                  top_k=top_k, generator=torch.Generator().manual_seed(0))


def _shape_cells(clips: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, T', H', W') bool: the top codes of frames CONTEXT..FRAMES-1 of each held-out clip (B, 3, FRAMES, H, W)
    whose frames and pixels show one of the generator's shapes, on a top grid of H'×W' codes a latent frame."""
    from vqvid.commands.demo import held_out_shapes
    from vqvid.models.vqvae import TIME_FACTOR

    shown = torch.stack([torch.stack([shape.visible > 0.5 for shape in shapes]).any(0)
                         for shapes in held_out_shapes(clips, CONTEXT, FRAMES)]).float()  # (B, F, H, W)
    kernel = (TIME_FACTOR, shown.shape[2] // grid[0], shown.shape[3] // grid[1])
    return torch.nn.functional.max_pool3d(shown[:, None], kernel)[:, 0] > 0


def _print_levels(rows: dict) -> None:
    mean = lambda values: sum(values) / len(values)
    print(f"{'decoding of frames 8-15':46s} {'PSNR mean of N':>15s} {'single':>7s} {'kept, mean of N':>16s} "
          f"{'single':>7s} {'single @15':>10s} {'as themselves, mean of N':>25s} {'@15':>5s}")
    for name, label in LEVEL_ROWS.items():
        if name not in rows:  # the reader's rows, of a folder without one
            continue
        r = rows[name]
        print(f"{label:46s} {r['psnr_mean_of_n']:15.2f} {r['psnr_single']:7.2f} {100 * r['kept_mean_of_n']:15.0f}% "
              f"{100 * r['kept_single']:6.0f}% {100 * r['kept_single_frame_15']:9.0f}% "
              f"{100 * mean(r['near_mean_of_n']):24.0f}% {100 * r['near_mean_of_n'][-1]:4.0f}%")
    if "psnr_best_of_n" in rows["warped"]:
        print(f"{'the prediction warped, best of N (an oracle)':46s} {rows['warped']['psnr_best_of_n']:15.2f}")
    copied = rows["copy_last"]
    print(f"{'copy last frame':46s} {copied['psnr']:15.2f} {'':7s} {100 * copied['kept']:15.0f}% {'':7s} "
          f"{100 * copied['kept_frame_15']:9.0f}% {100 * mean(copied['near']):24.0f}% {100 * copied['near'][-1]:4.0f}%")
    print("top codes of each predicted latent frame equal to the whole clip's: "
          + "; ".join(f"{name} " + ", ".join(f"{100 * v:.0f}%" for v in values)
                      for name, values in rows["top_codes_equal_truth"].items()))
    distance = rows["top_codes_distance"]
    print(f"their codebook distance to the whole clip's, where the shapes are ({100 * distance['shape_share']:.0f}% "
          "of the top codes) / elsewhere: " + "; ".join(
              f"{name} " + ", ".join(f"{s:.3f} / {e:.3f}" for s, e in zip(d["shapes"], d["elsewhere"], strict=True))
              for name, d in distance.items() if name != "shape_share"))
    for level, bits in rows["bits_per_frame"].items():
        print(f"{level} prior, held-out bits per code of latent frame 0, 1, ...: "
              + ", ".join(f"{b:.2f}" for b in bits))


def _plot(points: list[dict], note: str, path: Path = PLOT, trained: tuple[str, ...] = ("top", "bottom")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["steps"] for p in points]
    xlabel = "prior training steps (each prior)" if len(trained) == 2 else f"{trained[0]} prior training steps"
    shaped = [p for p in points if "shapes_kept" in p]  # results written before the shape scores lack them
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    labels = DECODINGS
    if "mean_of_n_last" not in points[0]["mean_psnr"]:  # results from before --anchor warp: all anchored in place
        labels = {**DECODINGS, "mean_of_n": "default: mean of N, anchored", "best_of_n": "best of N samples",
                  "generated": "single sample"}
    for key, label in labels.items():
        if key not in points[0]["mean_psnr"]:  # results written before the decoding was measured
            continue
        style = "k--" if key == "copy_last" else "o-"
        left.plot(steps, [p["mean_psnr"][key] for p in points], style, label=label)
    left.set(xscale="log", xlabel=xlabel, ylabel="PSNR of frames 8-15 (dB)",
             title="prediction, held-out clips")
    left.legend(fontsize=8)
    for key in (key for key in SHAPE_DECODINGS if shaped and key in shaped[0]["shapes_kept"]):
        style = "k--" if key == "copy_last" else "o-"
        middle.plot([p["steps"] for p in shaped], [100 * p["shapes_kept"][key] for p in shaped], style,
                    label=labels[key])
    near = [p for p in points if "shapes_near" in p]  # results written before these scores lack them
    for key, label in (("mean_of_n_last", "default"), ("copy_last", "copy last")) if near else ():
        for figure_key, which, marker in (("shapes_near", "as themselves", "s"),
                                          ("shapes_near_last_frame", "as themselves, frame 15", "^")):
            middle.plot([p["steps"] for p in near], [100 * p[figure_key][key] for p in near],
                        f"k{marker}:" if key == "copy_last" else f"{marker}:", label=f"{label}, {which}")
    middle.set(xscale="log", xlabel=xlabel, ylabel="shapes kept, frames 8-15 (%)",
               title="shape identity, held-out clips", ylim=(0, 100))
    middle.legend(fontsize=7, loc="lower center", ncol=2)
    for level in ("top", "bottom"):
        right.plot(steps, [p["bits_per_code"][level] for p in points], "o-", label=f"{level} prior")
    right.set(xscale="log", xlabel=xlabel, ylabel="bits per code (held out)",
              title="priors")
    right.legend(fontsize=8)
    for axes in (left, middle, right):
        axes.set_xticks(steps, [str(s) for s in steps])
        axes.minorticks_off()
    figure.suptitle(textwrap.fill(note, 190), fontsize=9)  # a long note (--prior-set) on two lines
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo_out", help="a finished `vqvid demo` folder")
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 200, 400, 800, 1600, 3200],
                        help="prior training steps at which to measure (multiples of the smallest)")
    parser.add_argument("--samples", type=int, default=8, help="samples per clip (default 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from the results JSON")
    parser.add_argument("--levels", action="store_true",
                        help="only decode the demo model's samples level by level (which level loses the shapes)")
    parser.add_argument("--model", type=Path, help="--levels: this model folder instead of the demo's")
    parser.add_argument("--videos", type=int, help="this many held-out videos instead of the demo's")
    parser.add_argument("--train", choices=("both", "top", "bottom"), default="both",
                        help="which priors train along the budgets; the other is the demo's own (default both)")
    parser.add_argument("--no-reader", action="store_true",
                        help="the curve's top codes from the top prior even where the demo has a context reader")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"--levels: sample at this temperature (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("--bottom-temperature", type=float, help="--levels: the bottom prior's own temperature")
    parser.add_argument("--top-k", type=int, help="--levels: sample among the k most likely codes only")
    parser.add_argument("--keep", type=Path, help="keep the priors' runs and model folders in this new folder")
    parser.add_argument("--tag", help="suffix _TAG to the names of the results JSON and the plot")
    parser.add_argument("--prior-set", dest="overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="the trained priors' config in place of the tiny preset's, as "
                        "`vqvid train prior` takes it, e.g. model.attention=true model.channels=64")
    args = parser.parse_args()
    if args.tag is not None and not args.tag.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"bench_prediction: --tag {args.tag!r}: use letters, digits, '-' and '_' only")
    tagged = lambda name: name if args.tag is None else f"{name}_{args.tag}"  # the output files' names
    plot = PLOT.with_stem(tagged(PLOT.stem))
    if args.replot:
        saved = json.loads((ROOT / "benchmarks" / "results" / f"{tagged('prediction')}.json").read_text())
        _plot(saved["points"], saved["note"], plot, tuple(saved.get("trained", ("top", "bottom"))))
        return 0
    needed = [args.demo / p for p in ("vqvae/checkpoints/last.ckpt", "codes/train", "codes/val", "data")]
    if missing := [str(p) for p in needed if not p.exists()]:
        print(f"bench_prediction: needs a finished `make demo` in {args.demo} (missing {', '.join(missing)}); "
              "skipped")
        return 0
    torch.set_num_threads(args.threads)
    if args.levels:
        model = args.model or args.demo / "model"
        with tempfile.TemporaryDirectory() as tmp:
            data, clips = _held_out(args.demo, args.videos, Path(tmp))
            rows = levels(args.demo, args.samples, model, data, args.temperature, args.bottom_temperature,
                          args.top_k)
        _print_levels(rows)
        write_results(tagged("prediction_levels"), args.threads,
                      samples=args.samples, temperature=args.temperature,
                      bottom_temperature=args.bottom_temperature, top_k=args.top_k,
                      model=str(args.model or "the demo's"), rows=rows,
                      note=f"samples of frames 8-15 of {clips} held-out clips, level by level")
        return 0
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        raise SystemExit(f"bench_prediction: --keep {args.keep} is not empty; give a new folder")
    reader = args.demo / "reader" / "checkpoints" / "last.ckpt"
    reader = None if args.no_reader or not reader.exists() else reader
    trained = ("top", "bottom") if args.train == "both" else (args.train,)
    if missing := [str(_demo_prior(args.demo, level)) for level in ("top", "bottom")
                   if level not in trained and not _demo_prior(args.demo, level).exists()]:
        raise SystemExit(f"bench_prediction: --train {args.train} needs the demo's other prior ({missing[0]})")
    budgets = sorted(args.budgets)
    with tempfile.TemporaryDirectory() if args.keep is None else contextlib.nullcontext(args.keep) as tmp:
        work = Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, clips = _held_out(args.demo, args.videos, work / "held_out")
        runs = {level: work / f"prior_{level}" for level in trained}
        seconds = {level: round(_train(level, args.demo, runs[level], budgets, args.overrides), 1)
                   for level in runs}
        points = []
        for budget in budgets:
            points.append(_measure(args.demo, runs, budget, args.samples, clips, work, data, reader))
            p = points[-1]
            print(f"{budget:6d} steps: bits/code top {p['bits_per_code']['top']:.3f} bottom "
                  f"{p['bits_per_code']['bottom']:.3f}; PSNR " + ", ".join(
                      f"{DECODINGS[k]} {v:.2f}" for k, v in p["mean_psnr"].items()) + "; shapes kept " + ", ".join(
                      f"{DECODINGS[k]} {100 * v:.0f}%" for k, v in p["shapes_kept"].items()) + "; as themselves "
                  + ", ".join(f"{DECODINGS[k]} {100 * v:.0f}% (frame 15: {100 * p['shapes_near_last_frame'][k]:.0f}%)"
                              for k, v in p["shapes_near"].items()), flush=True)
    trained_note = "both priors" if args.train == "both" else f"the {args.train} prior (the other the demo's)"
    config = f" ({' '.join(args.overrides)})" if args.overrides else ""
    note = (f"tiny priors{config} on the demo's codes, {args.samples} samples per clip, {clips} held-out clips; "
            f"{trained_note} trained, one run per prior annealed at {budgets[-1]} steps; top codes after the context "
            + ("from the demo's context reader" if reader is not None else "from the top prior"))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    write_results(tagged("prediction"), args.threads, budgets=budgets, samples=args.samples, training_device=device,
                  training_seconds=seconds, trained=list(trained), overrides=args.overrides,
                  reader=reader is not None, points=points,
                  note=note)
    _plot(points, note, plot, trained)
    return 0


if __name__ == "__main__":
    sys.exit(main())
