#!/usr/bin/env bash
# CUT beside CycleGAN on the unpaired shapes world at equal CPU time (docs/results.md, "CUT beside CycleGAN").
#
#   plugins/ganzoo-cut/benchmarks/cut_vs_cyclegan.sh [OUT] [SEEDS] [CUT_STEPS] [CYCLEGAN_STEPS]
#
# CycleGAN runs the 64-px CycleGAN quickstart that quickstart_cut.yaml was modelled on (the same world,
# generator and discriminator), written out of git at commit f971420, so that later changes to
# recipes/quickstart_cyclegan.yaml do not change this comparison (set CYCLEGAN_RECIPE to use another).
# One thread per run, one run at a time. The step counts give both models about the same CPU time
# (CycleGAN's step costs about 1.2 times CUT's, see `ganzoo bench --threads 1`); each run's CPU
# seconds are measured and printed beside its scores. Then `ganzoo eval` scores every final
# checkpoint on the 50 val images: palette_transfer (shapes recoloured into B's palette) and
# shape_iou (output shapes where the input's are). Run it from the repository root.
set -euo pipefail
out="${1:-runs/cut_vs_cyclegan}"
seeds="${2:-0 1 2}"
cut_steps="${3:-720}"
cyclegan_steps="${4:-600}"
mkdir -p "$out"
cyclegan_recipe="${CYCLEGAN_RECIPE:-$out/quickstart_cyclegan_64.yaml}"
[ -f "$cyclegan_recipe" ] || git show f971420:recipes/quickstart_cyclegan.yaml > "$cyclegan_recipe"
export OMP_NUM_THREADS=1
for seed in $seeds; do
  for model in cut cyclegan; do
    steps=$cut_steps; recipe=recipes/quickstart_cut.yaml
    [ "$model" = cyclegan ] && steps=$cyclegan_steps && recipe=$cyclegan_recipe
    run="$out/${model}_s$seed"
    if [ ! -f "$run/summary.json" ]; then
      /usr/bin/time -f "%U %S" -o "$run.time" ganzoo train "$recipe" --out "$run" --no-progress \
        --set train.seed="$seed" --set train.max_steps="$steps" --set train.device=cpu > "$run.log" 2>&1
    fi
    ganzoo eval "$run" --metrics palette_transfer --num-inputs 50 --device cpu --json > "$run.eval.json" 2>/dev/null
  done
done
python - "$out" "$seeds" <<'PY'
import json, statistics, sys
from pathlib import Path
out, seeds = Path(sys.argv[1]), sys.argv[2].split()
print("| model | seed | steps | CPU s | palette_transfer | shape_iou |")
print("|---|---|---|---|---|---|")
summary = {}
for model in ("cut", "cyclegan"):
    for seed in seeds:
        run = out / f"{model}_s{seed}"
        cpu = sum(float(x) for x in (out / f"{model}_s{seed}.time").read_text().split()[-2:])
        steps = json.loads((run / "summary.json").read_text())["step"]
        scores = json.loads((out / f"{model}_s{seed}.eval.json").read_text())
        flat = json.dumps(scores)
        def find(key, node=scores):
            if isinstance(node, dict):
                if key in node and isinstance(node[key], (int, float)):
                    return float(node[key])
                for v in node.values():
                    found = find(key, v)
                    if found is not None:
                        return found
            if isinstance(node, list):
                for v in node:
                    found = find(key, v)
                    if found is not None:
                        return found
            return None
        pt, iou = find("palette_transfer"), find("shape_iou")
        summary.setdefault(model, []).append((pt, iou, cpu))
        print(f"| {model} | {seed} | {steps} | {cpu:.0f} | {pt:.3f} | {iou:.3f} |")
for model, rows in summary.items():
    pts, ious, cpus = zip(*rows)
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
    print(f"| **{model}** | mean | | {statistics.mean(cpus):.0f} | {statistics.mean(pts):.3f} ± {sd(pts):.3f} "
          f"| {statistics.mean(ious):.3f} ± {sd(ious):.3f} |")
PY
