"""Hand-written CPU convolutions for ganzoo, registered as the accelerator ``cpu_kernels``.

Importing this package registers :class:`CpuKernels`; ganzoo imports it at start-up through the
``ganzoo.plugins`` entry point declared in ``pyproject.toml``, and a recipe switches it on with
``train.accelerators: [cpu_kernels]``. The modules, one idea each:

- :mod:`~ganzoo_cpu_kernels.accelerator`: the accelerator (what ``prepare`` does, checkpoint state);
- :mod:`~ganzoo_cpu_kernels.cpu_convs`: the tuned ``Conv2d`` / ``ConvTranspose2d`` classes;
- :mod:`~ganzoo_cpu_kernels.conv_routes`: which route each call signature takes, timed once;
- :mod:`~ganzoo_cpu_kernels.route_cache`: those choices kept on disk per machine;
- :mod:`~ganzoo_cpu_kernels.winograd`, :mod:`~ganzoo_cpu_kernels.gemm_conv`,
  :mod:`~ganzoo_cpu_kernels.conv_backward`: the routes;
- :mod:`~ganzoo_cpu_kernels.cpu_allocator`: glibc's ``malloc`` keeping freed memory.
"""
from ganzoo_cpu_kernels.accelerator import CpuKernels

__all__ = ["CpuKernels"]
__version__ = "0.1.0"
