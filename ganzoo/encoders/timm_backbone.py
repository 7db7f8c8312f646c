"""Any timm image model as an encoder: ``timm:<model_name>`` (e.g. ``timm:resnet18``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ganzoo.encoders.conv import LatentHead, check_encoder_input, check_positive
from ganzoo.errors import ComponentError, did_you_mean
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import register


@register("encoder", "timm", prefix=True)
class TimmEncoder(nn.Module):
    """A timm backbone (pooled features, no classifier) with linear mu/logvar heads.

    Args:
        model_name: a timm model name (``timm.list_models()``); set by the ``timm:`` prefix.
        input_nc: channels of the encoded image (timm adapts the stem).
        nz: size of the latent code.
        vae: predict a log-variance too (``False``: a point estimate, logvar ``None``).
        pretrained: load timm's pretrained weights (downloads them). Off by default. Note that a
            model re-initialising its networks would overwrite these weights.
        spectral_norm: spectral normalisation on every conv and linear layer of the backbone and the
            heads (pretrained weights then describe another function: each layer is rescaled).
    """

    def __init__(self, model_name: str = "resnet18", input_nc: int = 3, nz: int = 8, vae: bool = True,
                 pretrained: bool = False, spectral_norm: bool = False) -> None:
        super().__init__()
        import timm  # imported here so that `import ganzoo` stays fast

        check_positive("encoder 'timm'", input_nc=input_nc, nz=nz)
        if not model_name:
            raise ComponentError("encoder 'timm' needs a model name, as in 'timm:resnet18'")
        if not timm.is_model(model_name):
            hint = did_you_mean(model_name, timm.list_models())
            raise ComponentError(f"timm has no model {model_name!r} (encoder 'timm:{model_name}')",
                                 hint=hint or "see timm.list_models() for the available names")
        self.model_name = model_name
        self.input_nc = input_nc
        self.nz = nz
        self.vae = vae
        self.pretrained = pretrained
        # num_classes=0 makes timm return globally pooled features instead of class logits.
        self.backbone = timm.create_model(model_name, pretrained=pretrained, num_classes=0, in_chans=input_nc)
        feature_info = getattr(self.backbone, "feature_info", None) or [{}]
        self.size_multiple = int(feature_info[-1].get("reduction", 32))
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = LatentHead(int(width), nz, vae)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode ``x`` [N, input_nc, H, W] to ``(mu, logvar)``, each [N, nz] (logvar None if not vae)."""
        check_encoder_input(self, x, self.size_multiple)
        return self.head(self.backbone(x))
