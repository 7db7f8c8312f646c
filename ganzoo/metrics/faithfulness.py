"""Faithfulness: does the output keep what it should?

- ``reconstruction``: L1, PSNR and SSIM of the reconstruction of B against B: ``G(A, E(B))`` for
  BicycleGAN (E's mean code), ``G(A)`` for pix2pix. Images are compared in [0, 1] after uint8
  quantisation (what a saved PNG holds); L1 is the mean absolute difference in that range.
- ``latent_recovery``: BicycleGAN's ``|E(G(A, z)) - z|`` (mean absolute error over the codes of the
  samples), the quantity the cLR-GAN branch trains down.
- ``cycle``: CycleGAN's ``|G_B(G_A(A)) - A|`` and ``|G_A(G_B(B)) - B|`` in [0, 1].
"""
from __future__ import annotations

import torch

from ganzoo.inference import from_uint8, to_uint8
from ganzoo.metrics.base import EvalContext, Metric, MetricResult
from ganzoo.registry import register


def _unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> [0, 1] floats through uint8, as saved images are."""
    return to_uint8(images).float() / 255.0


def image_scores(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """L1, PSNR (dB) and SSIM between image batches in [0, 1] (N, C, H, W), averaged over images."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    l1 = (output - target).abs().mean().item()
    psnr = peak_signal_noise_ratio(output, target, data_range=1.0, reduction="elementwise_mean",
                                   dim=(1, 2, 3)).item()
    ssim = structural_similarity_index_measure(output, target, data_range=1.0).item()
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


@register("metric", "reconstruction")
class Reconstruction(Metric):
    """L1 / PSNR / SSIM of G(A, E(B)) (BicycleGAN) or G(A) (pix2pix) against the target B."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if "G" not in ctx.model.networks:
            return "it needs paired targets and one generator G (CycleGAN data is unpaired; see 'cycle')"
        if not ctx.has_targets():
            return "the data has no targets B"
        if ctx.nz > 0 and "E" not in ctx.model.networks:
            return "the generator takes a latent code but there is no encoder E to take it from B (pix2pix+noise)"
        return None

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> MetricResult:
        G = ctx.model.networks["G"]
        uses_code = "E" in ctx.model.networks and ctx.nz > 0
        outputs = []
        for A, B in zip(ctx.batches(ctx.inputs()), ctx.batches(ctx.targets())):
            A, B = A.to(ctx.device), B.to(ctx.device)
            y = G(A, ctx.model.encode(B)) if uses_code else G(A)
            outputs.append(_unit(y).cpu())
        scores = image_scores(torch.cat(outputs), _unit(ctx.targets()))
        what = "G(A, E(B)) with E's mean code" if uses_code else "G(A)"
        return MetricResult(scores, {"compared": f"{what} vs B", "range": "[0,1] after uint8 quantisation",
                                     "ssim": "torchmetrics, gaussian 11x11, sigma 1.5", "n": ctx.num_inputs})


@register("metric", "latent_recovery")
class LatentRecovery(Metric):
    """Mean |E(G(A, z)) - z| over the evaluation codes (BicycleGAN's latent regression)."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if "E" not in ctx.model.networks or ctx.nz == 0:
            return "it needs an encoder E and a latent code (BicycleGAN)"
        return None

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> MetricResult:
        samples = ctx.samples()
        codes = ctx.latents()
        assert codes is not None
        errors = []
        for images, z in zip(samples, codes):
            recovered = ctx.model.encode(from_uint8(images).to(ctx.device)).cpu()
            errors.append((recovered - z).abs().mean(1))
        error = torch.cat(errors)
        return MetricResult({"latent_l1": error.mean().item()},
                            {"codes": int(error.numel()), "encoder_output": "mean (mu)",
                             "images": "samples after uint8 quantisation"})


@register("metric", "cycle")
class CycleError(Metric):
    """CycleGAN cycle-reconstruction errors |G_B(G_A(A)) - A| and |G_A(G_B(B)) - B| in [0, 1]."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if not {"G_A", "G_B"} <= set(ctx.model.networks):
            return "it needs the two generators of CycleGAN"
        if not ctx.has_targets():
            return "the data has no domain-B images"
        return None

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> MetricResult:
        nets = ctx.model.networks
        forward, backward = (nets["G_A"], nets["G_B"]) if ctx.direction == "AtoB" else (nets["G_B"], nets["G_A"])
        err_a, err_b = [], []
        for A, B in zip(ctx.batches(ctx.inputs()), ctx.batches(ctx.targets())):
            A, B = A.to(ctx.device), B.to(ctx.device)
            err_a.append((_unit(backward(forward(A))) - _unit(A)).abs().mean((1, 2, 3)).cpu())
            err_b.append((_unit(forward(backward(B))) - _unit(B)).abs().mean((1, 2, 3)).cpu())
        return MetricResult({"cycle_A": torch.cat(err_a).mean().item(), "cycle_B": torch.cat(err_b).mean().item()},
                            {"range": "[0,1] after uint8 quantisation", "n": ctx.num_inputs})


__all__ = ["CycleError", "LatentRecovery", "Reconstruction", "image_scores"]
