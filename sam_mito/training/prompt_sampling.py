"""The prompts the Trainer draws afresh every step: jittered boxes and single points.

Each row's draw is seeded by the run's seed, the step and the row's index, so a run repeats
exactly, on any number of processes.
"""

from __future__ import annotations

import numpy as np
import torch

from sam_mito.data.point_prompts import sample_point_prompts
from sam_mito.data.prompts import jitter_boxes


def row_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one row's draw at one step."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(1)
    return torch.Generator().manual_seed(int(state[0]))


def jittered_boxes(
    boxes: torch.Tensor,
    indices: torch.Tensor,
    *,
    seed: int,
    step: int,
    max_shift: int,
    size: tuple[int, int],
) -> torch.Tensor:
    """``(B, K, 4)`` boxes with each side moved by up to ``max_shift`` pixels, inside ``size``.

    Each row is moved by :func:`sam_mito.data.prompts.jitter_boxes` with its own generator.
    """
    moved = [
        jitter_boxes(row.cpu(), max_shift=max_shift, size=size, generator=row_generator(seed, step, index))
        for row, index in zip(boxes, indices.tolist(), strict=True)
    ]
    return torch.stack(moved).to(boxes.device)


def point_batch(
    instances: torch.Tensor,
    indices: torch.Tensor,
    *,
    seed: int,
    step: int,
    max_objects: int,
    background: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Single-point prompts for a batch of labelled patches, padded to the largest count.

    Parameters
    ----------
    instances : torch.Tensor
        ``(B, H, W)`` integer object labels (0 background).
    indices : torch.Tensor
        ``(B,)`` the rows' dataset indices (they seed each row's draw).
    seed, step : int, keyword-only
        The run's seed and the current step.
    max_objects, background : int, keyword-only
        As in :func:`sam_mito.data.point_prompts.sample_point_prompts`.

    Returns
    -------
    points : torch.Tensor
        ``(B, K, 1, 2)`` one point ``[x, y]`` per prompt.
    targets : torch.Tensor
        ``(B, K, H, W)`` each prompt's target mask.
    valid : torch.Tensor
        ``(B, K)`` bool, False for padding.
    """
    drawn = [
        sample_point_prompts(
            labels.cpu(),
            max_objects=max_objects,
            background=background,
            generator=row_generator(seed, step, index),
        )
        for labels, index in zip(instances, indices.tolist(), strict=True)
    ]
    count = max(1, max(len(points) for points, _ in drawn))
    batch, (height, width) = len(drawn), instances.shape[-2:]
    points = torch.zeros(batch, count, 1, 2)
    targets = torch.zeros(batch, count, height, width)
    valid = torch.zeros(batch, count, dtype=torch.bool)
    for row, (row_points, row_targets) in enumerate(drawn):
        points[row, : len(row_points), 0] = row_points
        targets[row, : len(row_points)] = row_targets
        valid[row, : len(row_points)] = True
    device = instances.device
    return points.to(device), targets.to(device), valid.to(device)
