"""Time the official training step on synthetic data, with the settings of a ganzoo benchmark recipe.

The official code is not part of ganzoo and is never committed here: fetch it yourself and point
``--root`` at a checkout (or at its ``.py`` files extracted from git):

- pix2pix / CycleGAN: https://github.com/SsnL/pytorch-CycleGAN-and-pix2pix (branch ``pytorch04``,
  the PyTorch 0.4 port of junyanz/pytorch-CycleGAN-and-pix2pix that runs on current PyTorch);
- BicycleGAN: https://github.com/junyanz/BicycleGAN (master).

    python benchmarks/official.py --root ~/src/BicycleGAN --case bicyclegan_256 --steps 10 --json [--gpu]

The model is built by the official option parser and ``create_model`` with the flags of the
official training scripts (``scripts/train_*.sh``) and timed around ``set_input`` +
``optimize_parameters``, exactly what the official ``train.py`` calls per iteration. The report
has the fields of ``ganzoo bench --json`` that the comparison needs. ``--gpu`` runs it on the first
GPU (``--gpu_ids 0``), synchronising before each clock reading; peak memory is then
``torch.cuda.max_memory_allocated``, as ``ganzoo bench`` reports it on CUDA.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import torch

#: Official command-line flags per benchmark case: (family, flags, batch size, A channels, B channels, size).
CASES: dict[str, tuple[str, list[str], int, int, int, int]] = {
    # scripts/train_pix2pix.sh (facades): U-Net 256, batch norm, vanilla GAN, lambda 100, no pool.
    "pix2pix_256": ("pix2pix", ["--model", "pix2pix", "--which_model_netG", "unet_256", "--which_direction", "BtoA",
                                "--lambda_A", "100", "--dataset_mode", "aligned", "--no_lsgan", "--norm", "batch",
                                "--pool_size", "0", "--loadSize", "286", "--fineSize", "256"], 1, 3, 3, 256),
    "pix2pix_128": ("pix2pix", ["--model", "pix2pix", "--which_model_netG", "unet_128", "--which_direction", "BtoA",
                                "--lambda_A", "100", "--dataset_mode", "aligned", "--no_lsgan", "--norm", "batch",
                                "--pool_size", "0", "--loadSize", "143", "--fineSize", "128"], 1, 3, 3, 128),
    # scripts/train_cyclegan.sh: ResNet 9 blocks, instance norm, LSGAN, pool 50, no dropout.
    "cyclegan_256": ("cyclegan", ["--model", "cycle_gan", "--dataset_mode", "unaligned", "--pool_size", "50",
                                  "--no_dropout", "--loadSize", "286", "--fineSize", "256"], 1, 3, 3, 256),
    "cyclegan_128": ("cyclegan", ["--model", "cycle_gan", "--dataset_mode", "unaligned", "--pool_size", "50",
                                  "--no_dropout", "--loadSize", "143", "--fineSize", "128"], 1, 3, 3, 128),
    # scripts/train_edges2shoes.sh: 1-channel edges, nz 8, dropout, batch 2, the 256 presets.
    "bicyclegan_256": ("bicyclegan", ["--model", "bicycle_gan", "--direction", "AtoB", "--load_size", "256",
                                      "--crop_size", "256", "--nz", "8", "--input_nc", "1", "--use_dropout",
                                      "--no_flip", "--batch_size", "2"], 2, 1, 3, 256),
    "bicyclegan_128": ("bicyclegan", ["--model", "bicycle_gan", "--direction", "AtoB", "--load_size", "128",
                                      "--crop_size", "128", "--nz", "8", "--input_nc", "1", "--use_dropout",
                                      "--no_flip", "--batch_size", "2", "--netG", "unet_128",
                                      "--netD", "basic_128_multi", "--netD2", "basic_128_multi",
                                      "--netE", "resnet_128"], 2, 1, 3, 128),
}


def build_official_model(root: str, flags: list[str], checkpoints: str, gpu: bool = False):
    """The official model, made by its own option parser from ``flags`` (CPU or the first GPU, no visdom)."""
    sys.path.insert(0, os.path.abspath(root))
    from options.train_options import TrainOptions  # the official package, from --root
    from models import create_model

    sys.argv = ["train.py", "--dataroot", "unused", "--gpu_ids", "0" if gpu else "-1", "--name", "bench",
                "--checkpoints_dir", checkpoints, *flags]
    opt = TrainOptions().parse()
    model = create_model(opt)
    if hasattr(model, "setup"):  # newer official code: schedulers and network printing live in setup()
        model.setup(opt)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="checkout of the official code for this case")
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--gpu", action="store_true", help="train on the first GPU (--gpu_ids 0)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    family, flags, batch_size, a_nc, b_nc, size = CASES[args.case]
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    A = torch.rand(batch_size, a_nc, size, size, generator=gen) * 2 - 1
    B = torch.rand(batch_size, b_nc, size, size, generator=gen) * 2 - 1
    # The official direction flag swaps A and B at set_input: hand it the pair so its real_A is our A.
    swap = "BtoA" in flags
    data = {"A": B if swap else A, "B": A if swap else B, "A_paths": ["synthetic"] * batch_size,
            "B_paths": ["synthetic"] * batch_size}
    times = []
    with tempfile.TemporaryDirectory() as checkpoints, contextlib.redirect_stdout(sys.stderr):
        cwd = os.getcwd()
        try:
            model = build_official_model(args.root, flags, checkpoints, gpu=args.gpu)
        finally:
            os.chdir(cwd)
        sync = torch.cuda.synchronize if args.gpu else (lambda: None)
        for i in range(args.warmup + args.steps):
            if i == args.warmup and args.gpu:
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            model.set_input(data)
            model.optimize_parameters()
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    report = {
        "implementation": "official", "case": args.case, "model": family, "device": "cuda" if args.gpu else "cpu",
        "threads": torch.get_num_threads(), "batch_size": batch_size, "image_size": size,
        "steps": args.steps, "warmup": args.warmup, "step_seconds": times, "median_s": median,
        "min_s": min(times), "max_s": max(times), "images_per_s": batch_size / median,
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "memory_kind": "rss",
    }
    if args.gpu:
        report.update(peak_memory_bytes=torch.cuda.max_memory_allocated(), memory_kind="cuda_max_allocated")
    report["peak_memory_mib"] = report["peak_memory_bytes"] / 2**20
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"official {args.case}: median {median:.4f} s/step (min {min(times):.4f}, max {max(times):.4f}), "
              f"{report['images_per_s']:.2f} images/s, peak {report['memory_kind']} "
              f"{report['peak_memory_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
