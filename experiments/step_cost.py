"""What one training step of a run costs on this CPU, to plan how long a run takes before starting it.

Wall-clock seconds say little on a shared machine; the process's CPU seconds (``time.process_time``) are what a
step costs, and on one torch thread they are what the wall clock would read on an idle core.
"""
from __future__ import annotations

import statistics
import time
from typing import Sequence, Tuple

import torch

from capsedu.train import TrainConfig, make_optimizer, train_epoch
from capsedu.training.speed import resolve_amp


def time_steps(config: TrainConfig, batch: Sequence[torch.Tensor], input_shape: Tuple[int, int, int],
               steps: int = 3, threads: int = 1) -> Tuple[float, float]:
    """``(wall, cpu)``: median seconds of one training step (forward, the run's objective, backward, Adam) of
    ``config``'s model on ``batch``, after one untimed warm-up step, on the CPU with the run's mixed-precision
    setting and ``threads`` torch threads (restored afterwards). The model is built with seed 0."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng():                   # the caller's random stream is left where it was
            torch.manual_seed(0)
            net = config.build_model(input_shape)
            optimizer, scheduler = make_optimizer(net)
            amp = resolve_amp(config.amp, torch.device("cpu"))
            objective = config.build_objective()
            wall, cpu = [], []
            for _ in range(steps + 1):
                start, start_cpu = time.perf_counter(), time.process_time()
                train_epoch(net, [batch], optimizer, scheduler, objective, progress=False, amp=amp)
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(wall[1:]), statistics.median(cpu[1:])
