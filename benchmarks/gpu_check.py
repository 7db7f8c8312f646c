"""The CUDA checks of issue #27: one ``PASS``/``FAIL``/``SKIP`` line per check, exit 1 if any failed.

    bash benchmarks/gpu_check.sh               # what to run on a machine with one (or more) GPUs
    python benchmarks/gpu_check.py [--budget 300] [--jobs 4] [--keep DIR]

Everything runs on a generated 256 px shapes world (no download) with ``recipes/bicyclegan_shoes.yaml``
(the official edges2shoes networks), a few steps per check, in about 5 minutes on one H100:

- ``cuda``: the device torch sees;
- ``train``: 40 steps on CUDA, ``summary.json`` says cuda; ``resume``: 20 more steps from its checkpoint;
- ``bf16``, ``fp16``, ``ema``, ``compile``, ``channels_last``, ``nonfinite_skip``, ``step_in_backward_off``,
  ``eval_during_training``: 20 steps each from scratch (the last one evaluates every 10 steps and
  asks for ``fid`` too, which without local Inception weights is recorded as unavailable);
- ``deterministic: step_in_backward on = off`` and ``deterministic: resume exact``: under
  ``train.deterministic: true`` the weights and optimizer states after 20 steps are the same bit for bit
  with updates inside the backward and without, and when resumed from step 10;
- ``syncs per step``: host-device synchronisations of a training step (``torch.cuda.set_sync_debug_mode``),
  counted over 6 steps of the real trainer loop after 5 warm-up steps, with the code lines that cause them;
- ``eval``, ``sample``, ``export``: the CUDA-trained run through ``ganzoo eval/sample --device cuda`` and
  ``ganzoo export`` (traced on the CPU);
- ``eval on cpu``, ``resume on cpu``: the GPU checkpoint evaluated and resumed on the CPU (one step);
- ``ddp``: ``ganzoo train --nproc N`` over all visible GPUs (SKIP with one GPU);
- ``official bench``: ``benchmarks/run.py --device cuda`` against the official code, only when
  ``OFFICIAL_P2P`` and/or ``OFFICIAL_BICYCLEGAN`` name checkouts (SKIP otherwise).

``--device cpu --recipe recipes/quickstart_bicyclegan.yaml --size 64 --steps 2`` runs the checks that
make sense off CUDA, to test this script itself on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass
class Outcome:
    status: str  # PASS, FAIL or SKIP
    detail: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    root: Path
    started: float = field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.args.device.startswith("cuda")

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.started)

    def base_overrides(self, steps: int) -> list[str]:
        a = self.args
        shapes = f"{{flavour: shapes-multimodal, size: {a.size}, n_train: 64, n_val: 8, n_test: 8, seed: 0}}"
        sets = [f"data.root={self.root / 'shapes'}", f"data.shapes={shapes}", "data.workers=2",
                f"train.device={a.device}", f"train.max_steps={steps}", "log.every=1000", "log.samples_every=1000",
                "log.checkpoint_every=1000", "log.keep_last=1", *a.overrides]
        return sets

    def ganzoo(self, *args: str, timeout: float = 240, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        limit = max(5.0, min(timeout, self.left()))
        full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                        PYTHONUNBUFFERED="1", COLUMNS="200", **(env or {}))
        try:
            return subprocess.run([sys.executable, "-m", "ganzoo", *args], cwd=REPO, env=full_env,
                                  capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, _text(exc.stdout),
                                               _text(exc.stderr) + f"\n(timed out after {limit:.0f} s)")

    def train(self, run: Path, steps: int, *sets: str, extra: tuple[str, ...] = (), timeout: float = 240
              ) -> subprocess.CompletedProcess[str]:
        args = ["train", self.args.recipe, "--out", str(run), "--no-progress"]
        for item in [*self.base_overrides(steps), *sets]:
            args += ["--set", item]
        return self.ganzoo(*args, *extra, timeout=timeout)


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """The last meaningful line a failed command printed."""
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error", "Error", "RuntimeError", "hint", "(timed out"))]
    shown = (errors or lines or ["no output"])[-2:]
    return f"exit {done.returncode}: " + " | ".join(shown)[:400]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _trained(ctx: Context, run: Path, done: subprocess.CompletedProcess[str], steps: int) -> Outcome:
    """PASS when a training command finished its steps on the asked device with finite losses."""
    if done.returncode != 0:
        return Outcome("FAIL", _why(done))
    try:
        summary = _summary(run)
    except (OSError, ValueError) as exc:
        return Outcome("FAIL", f"no summary.json ({exc})")
    device = str(summary.get("device"))
    if not device.startswith(ctx.args.device.split(":")[0]):
        return Outcome("FAIL", f"summary.json says device {device}, not {ctx.args.device}")
    if summary.get("step") != steps:
        return Outcome("FAIL", f"summary.json says step {summary.get('step')}, not {steps}")
    bad = [k for k, v in summary.get("losses", {}).items() if not math.isfinite(v)]
    if bad:
        return Outcome("FAIL", f"non-finite losses {', '.join(bad)}")
    return Outcome("PASS", f"{device}, {steps} steps, {summary['seconds']:.1f} s this session"
                   + (f", {summary['skipped_steps']} skipped" if summary.get("skipped_steps") else ""))


def _same_state(a: Path, b: Path) -> str | None:
    """None when the networks and optimizer states of two checkpoints are equal bit for bit, else where not."""
    import torch

    from ganzoo.training.checkpoint import load_checkpoint

    first, second = load_checkpoint(a), load_checkpoint(b)

    def walk(x: object, y: object, where: str) -> str | None:
        if isinstance(x, torch.Tensor):
            ok = isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
            if ok:
                return None
            diff = (x.double() - y.double()).abs().max().item() if isinstance(y, torch.Tensor) and x.shape == y.shape \
                else float("nan")
            return f"{where} differs (max |diff| {diff:.3g})"
        if isinstance(x, dict):
            if not isinstance(y, dict) or x.keys() != y.keys():
                return f"{where}: other keys"
            return next((w for k in x if (w := walk(x[k], y[k], f"{where}.{k}"))), None)
        if isinstance(x, (list, tuple)):
            if not isinstance(y, (list, tuple)) or len(x) != len(y):
                return f"{where}: other length"
            return next((w for i, (p, q) in enumerate(zip(x, y)) if (w := walk(p, q, f"{where}[{i}]"))), None)
        return None if x == y else f"{where}: {x!r} != {y!r}"

    return walk(first["networks"], second["networks"], "networks") or \
        walk(first["optimizers"], second["optimizers"], "optimizers")


# -- the checks -------------------------------------------------------------------------------------
Result = list[tuple[str, Outcome]]


def check_cuda(ctx: Context) -> Result:
    import torch

    if not ctx.cuda:
        return [("cuda", Outcome("SKIP", f"--device {ctx.args.device}"))]
    n = torch.cuda.device_count()
    names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
    return [("cuda", Outcome("PASS", f"{n} x {', '.join(names)}, torch {torch.__version__}, "
                                     f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"))]


def chain_main_run(ctx: Context) -> Result:
    """Train, resume, eval/sample/export on the device, then the same checkpoint on the CPU."""
    results: Result = []
    run = ctx.root / "main"
    steps = ctx.args.steps * 2
    done = ctx.train(run, steps, "log.checkpoint_every=" + str(ctx.args.steps))
    results.append((f"train {steps} steps", _trained(ctx, run, done, steps)))
    dependants = ["resume", "eval", "sample", "export", "eval on cpu", "resume on cpu"]
    if results[-1][1].status != "PASS":
        return results + [(name, Outcome("FAIL", "needs the training run above")) for name in dependants]

    more = steps + ctx.args.steps
    done = ctx.ganzoo("train", "--resume", str(run), "--set", f"train.max_steps={more}", "--no-progress")
    outcome = _trained(ctx, run, done, more)
    if outcome.status == "PASS" and f"at step {steps}/{more}" not in done.stderr:
        outcome = Outcome("FAIL", "the resume did not start from the last checkpoint")
    results.append(("resume", outcome))

    device = ctx.args.device
    done = ctx.ganzoo("eval", str(run), "--device", device, "--metrics", "mode_coverage,reconstruction,latent_recovery",
                      "--num-inputs", "4", "--num-z", "3", "--json", timeout=120)
    if done.returncode == 0 and "mode_coverage" in json.loads(done.stdout or "{}").get("metrics", {}):
        scores = json.loads(done.stdout)["metrics"]
        coverage, psnr = scores["mode_coverage"]["mode_coverage"], scores["reconstruction"]["psnr"]
        results.append(("eval", Outcome("PASS", f"{device}: mode_coverage {coverage:.3g}, psnr {psnr:.3g}")))
    else:
        results.append(("eval", Outcome("FAIL", _why(done))))

    samples = ctx.root / "samples"
    done = ctx.ganzoo("sample", str(run), "--input", str(ctx.root / "shapes" / "test"), "--pairs", "--num-z", "2",
                      "--device", device, "--out", str(samples), timeout=120)
    ok = done.returncode == 0 and (samples / "index.html").is_file()
    results.append(("sample", Outcome("PASS", f"{device}: {len(list(samples.rglob('*.png')))} images")
                    if ok else Outcome("FAIL", _why(done))))

    exported = ctx.root / "G.pt"
    done = ctx.ganzoo("export", str(run), "--out", str(exported), timeout=120)
    ok = done.returncode == 0 and exported.is_file()
    results.append(("export", Outcome("PASS", f"{exported.stat().st_size / 2**20:.0f} MiB TorchScript, parity checked")
                    if ok else Outcome("FAIL", _why(done))))

    if not ctx.cuda:
        return results + [(name, Outcome("SKIP", "the run is a CPU run already")) for name in dependants[-2:]]
    done = ctx.ganzoo("eval", str(run), "--device", "cpu", "--metrics", "mode_coverage", "--num-inputs", "2",
                      "--num-z", "2", "--json", timeout=120)
    results.append(("eval on cpu", Outcome("PASS", "the CUDA checkpoint scored on the CPU") if done.returncode == 0
                    else Outcome("FAIL", _why(done))))
    done = ctx.ganzoo("train", "--resume", str(run), "--set", "train.device=cpu",
                      "--set", f"train.max_steps={more + 1}", "--no-progress", timeout=180)
    outcome = _trained(Context(argparse.Namespace(**{**vars(ctx.args), "device": "cpu"}), ctx.root), run, done,
                       more + 1)
    if outcome.status == "PASS" and "continues on cpu" not in done.stderr:
        outcome = Outcome("FAIL", "no note that the run moved from CUDA to the CPU")
    results.append(("resume on cpu", outcome))
    return results


def variant(name: str, *sets: str, timeout: float = 180) -> Callable[[Context], Result]:
    def check(ctx: Context) -> Result:
        run = ctx.root / name
        steps = ctx.args.steps
        done = ctx.train(run, steps, *sets, timeout=timeout)
        outcome = _trained(ctx, run, done, steps)
        if outcome.status == "PASS" and name == "eval_during_training":
            lines = (run / "eval.jsonl").read_text().splitlines() if (run / "eval.jsonl").is_file() else []
            evaluations = [json.loads(line) for line in lines]
            if len(evaluations) != 2 or not all("mode_coverage" in e["metrics"] for e in evaluations):
                outcome = Outcome("FAIL", f"eval.jsonl holds {len(evaluations)} evaluations, "
                                          "expected 2 with mode_coverage")
            else:
                missing = ", ".join(sorted(evaluations[-1]["unavailable"])) or "none"
                outcome.detail += f"; 2 evaluations, unavailable: {missing}"
        shutil.rmtree(run, ignore_errors=True)  # a checkpoint of these networks is 0.7 GiB
        return [(name, outcome)]

    check.__name__ = name
    return check


def chain_deterministic(ctx: Context) -> Result:
    """Under train.deterministic: updates inside the backward or not, resumed or not: the same bits."""
    steps, half = ctx.args.steps, ctx.args.steps // 2
    on, off, resumed = ctx.root / "det_on", ctx.root / "det_off", ctx.root / "det_resumed"
    common = ("train.deterministic=true", f"log.checkpoint_every={half}", "log.keep_last=2")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(ctx.train, on, steps, *common, "train.step_in_backward=true")
        second = pool.submit(ctx.train, off, steps, *common, "train.step_in_backward=false")
        done_on, done_off = first.result(), second.result()
    name_eq, name_resume = "deterministic: step_in_backward on = off", "deterministic: resume exact"
    results: Result = []
    final = f"checkpoints/step_{steps:08d}.pt"
    a, b = _trained(ctx, on, done_on, steps), _trained(ctx, off, done_off, steps)
    if a.status != "PASS" or b.status != "PASS":
        bad = a if a.status != "PASS" else b
        return [(name_eq, bad), (name_resume, Outcome("FAIL", "needs the deterministic run above"))]
    where = _same_state(on / final, off / final)
    results.append((name_eq, Outcome("PASS", f"{steps} steps, networks and Adam states equal bit for bit")
                    if where is None else Outcome("FAIL", where)))
    (resumed / "checkpoints").mkdir(parents=True)
    os.link(on / f"checkpoints/step_{half:08d}.pt", resumed / f"checkpoints/step_{half:08d}.pt")
    done = ctx.ganzoo("train", "--resume", str(resumed), "--no-progress")
    outcome = _trained(ctx, resumed, done, steps)
    if outcome.status == "PASS":
        where = _same_state(on / final, resumed / final)
        outcome = Outcome("PASS", f"resumed at step {half}: the same bits at step {steps}") if where is None \
            else Outcome("FAIL", where)
    results.append((name_resume, outcome))
    for run in (on, off, resumed):
        shutil.rmtree(run, ignore_errors=True)
    return results


def check_syncs(ctx: Context) -> Result:
    """Host-device synchronisations per step of the trainer loop, and where they come from."""
    import torch
    from rich.console import Console

    from ganzoo.recipe import prepare_recipe
    from ganzoo.training.trainer import Trainer

    if not ctx.cuda:
        return [("syncs per step", Outcome("SKIP", "CUDA only"))]
    warmup, counted = 5, 6
    total = warmup + counted + 1
    recipe = prepare_recipe(REPO / ctx.args.recipe, ctx.base_overrides(total))
    trainer = Trainer(recipe, ctx.root / "syncs", show_progress=False, console=Console(file=io.StringIO()))
    sites: collections.Counter[str] = collections.Counter()
    calls = {"n": 0}
    step = trainer.parts.step

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if "synchronizing" not in str(message):
            return
        frames = [f for f in traceback.extract_stack()[:-1] if "/ganzoo/" in f.filename.replace(os.sep, "/")]
        where = f"{Path(frames[-1].filename).relative_to(REPO)}:{frames[-1].lineno}" if frames else "outside ganzoo"
        sites[where] += 1

    def counting_step(batch):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == warmup + 1:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")
        elif calls["n"] == total:  # the last step logs and samples: not counted
            torch.cuda.set_sync_debug_mode("default")
        return step(batch)

    trainer.parts.step = counting_step  # type: ignore[method-assign]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        previous, warnings.showwarning = warnings.showwarning, record
        try:
            trainer.run()
        finally:
            warnings.showwarning = previous
            torch.cuda.set_sync_debug_mode("default")
    shutil.rmtree(ctx.root / "syncs", ignore_errors=True)
    count = sum(sites.values())
    top = ", ".join(f"{where} x{n / counted:g}" for where, n in sites.most_common(4))
    return [("syncs per step", Outcome("PASS", f"{count / counted:g} per step over {counted} steps"
                                               + (f" ({top})" if top else "")))]


def check_ddp(ctx: Context) -> Result:
    import torch

    n = torch.cuda.device_count() if ctx.cuda else 0
    if n < 2:
        return [("ddp", Outcome("SKIP", f"{n} GPU(s) visible; needs 2 or more"))]
    run = ctx.root / "ddp"
    steps = ctx.args.steps
    done = ctx.train(run, steps, f"train.batch_size={2 * n}", extra=("--nproc", str(n)))
    outcome = _trained(ctx, run, done, steps)
    if outcome.status == "PASS" and _summary(run).get("world_size") != n:
        outcome = Outcome("FAIL", f"summary.json says world_size {_summary(run).get('world_size')}, not {n}")
    elif outcome.status == "PASS":
        outcome.detail += f", {n} processes"
    shutil.rmtree(run, ignore_errors=True)
    return [("ddp", outcome)]


def check_official_bench(ctx: Context) -> Result:
    p2p, bicycle = os.environ.get("OFFICIAL_P2P"), os.environ.get("OFFICIAL_BICYCLEGAN")
    if not (p2p or bicycle):
        return [("official bench", Outcome("SKIP", "set OFFICIAL_P2P and/or OFFICIAL_BICYCLEGAN to checkouts"))]
    cases = (["pix2pix_256"] if p2p else []) + (["bicyclegan_256"] if bicycle else [])
    out = ctx.root / "bench.md"
    command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--device", ctx.args.device, "--cases", *cases,
               "--steps", "3", "--warmup", "1", "--rounds", "1", "--out", str(out)]
    command += (["--official-p2p", p2p] if p2p else []) + (["--official-bicyclegan", bicycle] if bicycle else [])
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(5.0, ctx.left()))
    except subprocess.TimeoutExpired:
        return [("official bench", Outcome("FAIL", "timed out"))]
    if done.returncode != 0:
        return [("official bench", Outcome("FAIL", _why(done)))]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "_256" in line]
    return [("official bench", Outcome("PASS", " ; ".join(rows)))]


# -- the driver -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (to test this script)")
    parser.add_argument("--recipe", default="recipes/bicyclegan_shoes.yaml")
    parser.add_argument("--size", type=int, default=256, help="side of the generated shapes world")
    parser.add_argument("--steps", type=int, default=20, help="steps per check (the main run trains twice as many)")
    parser.add_argument("--budget", type=float, default=300, help="seconds for all checks; later ones then fail")
    parser.add_argument("--jobs", type=int, default=4, help="training commands run side by side")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra recipe override")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.steps % 2:
        parser.error("--steps must be an even number >= 2")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("SKIP  gpu_check: no CUDA device here; nothing was run (skipped)")
        return 0
    root = args.keep or Path(tempfile.mkdtemp(prefix="ganzoo-gpu-check-"))
    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, root.resolve())
    from ganzoo.data.shapes import ensure_shapes

    ensure_shapes(ctx.root / "shapes", flavour="shapes-multimodal", size=args.size, n_train=64, n_val=8, n_test=8,
                  seed=0)
    print(f"gpu_check: {args.recipe} on {args.device}, {args.size} px shapes world in {ctx.root}, "
          f"{args.steps} steps per check, budget {args.budget:.0f} s", flush=True)

    parallel: list[Callable[[Context], Result]] = [
        chain_main_run, chain_deterministic,
        variant("bf16", "train.precision=bf16"),
        variant("fp16", "train.precision=fp16"),
        variant("ema", "train.ema=0.999"),
        variant("compile", "train.compile=true", timeout=280),
        variant("channels_last", "train.channels_last=true"),
        variant("nonfinite_skip", "train.nonfinite=skip"),
        variant("step_in_backward_off", "train.step_in_backward=false"),
        variant("eval_during_training", f"train.eval_every={args.steps // 2}",
                "train.eval_metrics=[mode_coverage, reconstruction, latent_recovery, fid]"),
    ]
    if not ctx.cuda:
        parallel = [c for c in parallel if c.__name__ not in ("fp16", "compile")]
    results: list[tuple[str, Outcome]] = []

    def report(items: Result) -> None:
        for name, outcome in items:
            results.append((name, outcome))
            print(f"{outcome.status:<5} {name}: {outcome.detail}", flush=True)

    def guarded(check: Callable[[Context], Result]) -> Result:
        try:
            return check(ctx)
        except Exception as exc:  # noqa: BLE001  (a broken check is a FAIL line, never a lost report)
            return [(check.__name__, Outcome("FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))]

    report(guarded(check_cuda))
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(guarded, check) for check in parallel]
        report(guarded(check_syncs))  # in this process, while the others train
        for future in futures:
            report(future.result())
    for check in (check_ddp, check_official_bench):  # all GPUs, or timings: alone
        report(guarded(check))

    seconds = time.perf_counter() - ctx.started
    failed = [name for name, o in results if o.status == "FAIL"]
    if seconds > args.budget:
        failed.append("time")
        print(f"FAIL  time: {seconds:.0f} s, over the budget of {args.budget:.0f} s")
    counts = collections.Counter(o.status for _, o in results)
    print(f"gpu_check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in {seconds:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if args.keep is None:
        shutil.rmtree(ctx.root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
