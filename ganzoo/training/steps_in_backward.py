"""Optimizer updates taken inside the backward pass, as gradients complete (``train.step_in_backward``).

A step's memory peaks at the end of a generator's backward: its activations are still partly alive
when all of its gradients have been written. Updating parameters as soon
as their gradients are complete, and freeing those gradients at once, means a network's gradients
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
guard (``train.nonfinite: stop``) stays exact in what it reports: gradients are checked before their
parameters are updated, into the fused kernel's own ``found_inf`` flag, so no update follows a
NaN/inf gradient, with no synchronisation inside the backward.
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import torch


def flag_nonfinite(tensors: list[torch.Tensor], flag: torch.Tensor) -> None:
    """Set ``flag`` (one element, on the tensors' device) when any of ``tensors`` holds NaN/inf; it
    is never cleared here. GradScaler's fused check, unscaling by exactly 1: one pass, no sync."""
    if tensors:
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, flag, torch.ones(1, device=flag.device))


def steps_fit_in_backward(optimizers: Iterable[torch.optim.Optimizer]) -> bool:
    """Whether each of ``optimizers`` can update its parameters one by one, bit for bit as one step:
    fused Adam/AdamW (whose fused kernel takes the non-finite flag)."""
    return all(isinstance(opt, torch.optim.Adam | torch.optim.AdamW) and opt.defaults.get("fused")
               for opt in optimizers)


#: Gradient bytes collected before they are applied together: one optimizer call per parameter costs
#: Python overhead that adds up over a network's many small parameters, while a few calls per
#: backward keep nearly all of the memory saving.
FLUSH_BYTES = 16 * 1024 * 1024


class StepsInBackward:
    """While active (``with``), the parameters of ``optimizers`` are updated by their optimizers as
    the backward completes their gradients (every :data:`FLUSH_BYTES` of them, and the rest when the
    backward ends), and those gradients are freed.

    With a ``nonfinite`` flag (a one-element float tensor on the parameters' device), no parameter
    is updated from a gradient holding NaN/inf, nor any after it, nor any while the flag is already
    set: the check writes the flag on the device and the fused kernel reads it there, so nothing
    waits for the device. Whoever owns the flag reads it when it needs to know.
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer], nonfinite: torch.Tensor | None = None) -> None:
        self.optimizers = list(optimizers)
        self.nonfinite = nonfinite
        self._handles: list[Any] = []
        # (optimizer, its param group) -> parameters with a complete gradient, not yet updated
        self._ready: dict[tuple[int, int], tuple[torch.optim.Optimizer, dict[str, Any], list[torch.Tensor]]] = {}
        self._ready_bytes = 0

    def __enter__(self) -> StepsInBackward:
        for opt in self.optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.requires_grad:
                        self._handles.append(p.register_post_accumulate_grad_hook(partial(self._collect, opt, group)))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc_type is None:
            self._update()

    def _collect(self, opt: torch.optim.Optimizer, group: dict[str, Any], p: torch.Tensor) -> None:
        if p.grad is None:
            return
        self._ready.setdefault((id(opt), id(group)), (opt, group, []))[2].append(p)
        self._ready_bytes += p.grad.numel() * p.grad.element_size()
        if self._ready_bytes >= FLUSH_BYTES:
            self._update()

    def _update(self) -> None:
        """Apply the optimizers to the collected parameters and free their gradients."""
        for opt, group, params in self._ready.values():
            own_groups = opt.param_groups
            # the optimizer's own step on a group of just these parameters: the same hyperparameters
            # (read now, after any scheduler change) and the same per-parameter state
            opt.param_groups = [{**group, "params": params}]
            try:
                if self.nonfinite is not None:
                    flag_nonfinite([p.grad for p in params], self.nonfinite)
                    opt.found_inf = self.nonfinite.view(())  # type: ignore[attr-defined]
                opt.step()
            finally:
                opt.param_groups = own_groups
                if self.nonfinite is not None:
                    del opt.found_inf  # type: ignore[attr-defined]
            for p in params:
                p.grad = None
        self._ready.clear()
        self._ready_bytes = 0
