"""How many threads and CPUs a run gets: decided here, for every executor.

Locally a run's threads are a RunOptions field that the process reads once, before Keras is
imported (`device.configure`); on Ray the CPUs reserved per run and the run's threads go together.
"""

from __future__ import annotations

from dataclasses import replace

from cnnbench import device as devices
from cnnbench.executor.ray_config import RayConfig
from cnnbench.train import RunOptions


def local_options(options: RunOptions, parallel: int) -> RunOptions:
    """The run options of `parallel` runs at once on this machine: the threads asked for; else, with
    N > 1 runs at once, the cores shared out (N workers × cores // N threads); else all cores (None)."""
    if options.threads is None and parallel > 1:
        return replace(options, threads=max(1, devices.cpu_cores() // parallel))
    return options


def pool_cpus(config: RayConfig, threads: int | None, parallel: int, cluster_cpus: float, node_cpus: float) -> float:
    """CPUs Ray reserves for each worker of a pool: `cpus_per_run`, else the threads asked for, else the
    cluster's CPUs shared out among the runs at once (at least 1 each), or a node's when one at a time."""
    if config.cpus_per_run is not None:
        return config.cpus_per_run
    if threads:
        return float(threads)
    return max(1.0, float(int(cluster_cpus // max(parallel, 1)))) if parallel > 1 else max(1.0, float(int(node_cpus)))


def fresh_cpus(config: RayConfig, threads: int | None, node_cpus: float) -> float:
    """CPUs a timed run (the fresh policy) reserves on Ray: every CPU of a node unless told otherwise,
    so nothing else runs beside it."""
    return config.cpus_per_run or float(threads or node_cpus)


def threads_for(threads: int | None, cpus: float) -> int:
    """A Ray run's threads: as asked, else one per CPU it reserved."""
    return threads or max(1, int(cpus))
