"""Optimizer updates taken inside the backward pass, one parameter at a time (``train.step_in_backward``).

A step's memory peaks at the end of a generator's backward: its activations are still partly alive
when all of its gradients have been written (unet_256: 218 MB of them). Updating each parameter as
soon as its gradient is complete, and freeing that gradient at once, means the network's gradients
never exist all together. The update of each parameter is the one ``optimizer.step()`` would make
after the backward (the same fused kernel on the same gradient and state), so the weights are equal
bit for bit; only where the work happens in time changes.

The gradient of a parameter is complete when autograd accumulates it (a post-accumulate-grad hook),
which happens once per backward after every use of the parameter has sent its share; every node
that saved the parameter has run by then. A node that saved a *detached* view of a parameter it
does not differentiate (BicycleGAN's frozen encoder in the latent loss) runs before the parameter's
accumulation in the engine's order; were it ever not to, autograd's version check would stop the
backward with an error rather than use the new weights.

Used only where the whole update can be cut up this way: fused Adam or AdamW (the defaults), no
loss scaler (fp16), one process (DistributedDataParallel averages the gradients after they are
accumulated), and an all-or-nothing update not needed (``train.nonfinite: skip``). The non-finite
guard (``train.nonfinite: stop``) stays exact in what it reports: each gradient is checked before its
parameter is updated, in the fused kernel's own ``found_inf`` flag, so no update follows a NaN/inf
gradient, with no synchronisation per parameter.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def steps_fit_in_backward(optimizers: Iterable[torch.optim.Optimizer]) -> bool:
    """Whether each of ``optimizers`` can update its parameters one by one, bit for bit as one step:
    fused Adam/AdamW (whose fused kernel takes the non-finite flag)."""
    return all(isinstance(opt, torch.optim.Adam | torch.optim.AdamW) and opt.defaults.get("fused")
               for opt in optimizers)


class StepsInBackward:
    """While active (``with``), each parameter of ``optimizers`` is updated by its optimizer as soon
    as the backward has accumulated its gradient, which is then freed.

    With ``check_finite``, a parameter whose gradient holds NaN/inf is not updated, nor any after it;
    :attr:`found_nonfinite` says whether that happened (one synchronisation, after the backward).
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer], check_finite: bool) -> None:
        self.optimizers = list(optimizers)
        self.check_finite = check_finite
        self._flags: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # device -> (flag, one)
        self._handles: list[Any] = []

    def __enter__(self) -> StepsInBackward:
        for opt in self.optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.requires_grad:
                        self._handles.append(p.register_post_accumulate_grad_hook(self._updater(opt, group)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _flag(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._flags:
            self._flags[device] = torch.zeros(1, device=device), torch.ones(1, device=device)
        return self._flags[device]

    def _updater(self, opt: torch.optim.Optimizer, group: dict[str, Any]):
        def update(p: torch.Tensor) -> None:
            if p.grad is None:
                return
            own_groups = opt.param_groups
            # the optimizer's own step on a group of this one parameter: the same hyperparameters (read
            # now, after any scheduler change) and the same per-parameter state
            opt.param_groups = [{**group, "params": [p]}]
            try:
                if self.check_finite:
                    flag, one = self._flag(p.grad.device)
                    # GradScaler's fused check, unscaling by exactly 1: sets the flag on NaN/inf, which
                    # the fused kernel then reads (as a scalar, like the step counts it corrects) to leave
                    # the parameter and its state as they are
                    torch._amp_foreach_non_finite_check_and_unscale_([p.grad], flag, one)
                    opt.found_inf = flag.view(())  # type: ignore[attr-defined]
                opt.step()
            finally:
                opt.param_groups = own_groups
                if self.check_finite:
                    del opt.found_inf  # type: ignore[attr-defined]
            p.grad = None
        return update

    @property
    def found_nonfinite(self) -> bool:
        return any(bool(flag.item()) for flag, _ in self._flags.values())
