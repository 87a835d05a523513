"""Single-point prompts for training, as SAM's automatic mask generation prompts a model.

``pipeline("mask-generation")`` lays a grid of points over the image and asks for three masks per
point; most points fall on background. A decoder trained only on boxes has never seen a point, so
the Trainer also samples, every step, one point inside each object (its target: that object) and a
few points on background (their target: nothing).
"""

from __future__ import annotations

import torch


def sample_point_prompts(
    instances: torch.Tensor, *, max_objects: int, background: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random single-point prompts and their target masks for one labelled patch.

    Parameters
    ----------
    instances : torch.Tensor
        ``(H, W)`` integer labels: 0 background, 1..N objects.
    max_objects : int, keyword-only
        At most this many objects get a point (a random choice of them when there are more).
    background : int, keyword-only
        Points on background pixels (fewer when the patch has fewer such pixels), each with an
        empty target.
    generator : torch.Generator, keyword-only
        Source of randomness (seeded per row and step by the Trainer).

    Returns
    -------
    points : torch.Tensor
        ``(K, 2)`` float ``[x, y]`` at pixel centres, object points first.
    targets : torch.Tensor
        ``(K, H, W)`` float masks: the object under each point, or zeros for a background point.
    """
    ids = instances.unique()
    ids = ids[ids > 0]
    ids = ids[torch.randperm(len(ids), generator=generator)[:max_objects]]
    points, targets = [], []
    for label in ids.tolist():
        points.append(_random_pixel(instances == label, generator))
        targets.append(instances == label)
    outside = instances == 0
    for _ in range(min(background, int(outside.sum()))):
        points.append(_random_pixel(outside, generator))
        targets.append(torch.zeros_like(outside))
    if not points:
        return torch.zeros(0, 2), torch.zeros(0, *instances.shape)
    return torch.stack(points), torch.stack(targets).float()


def _random_pixel(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    pick = int(torch.randint(len(rows), (1,), generator=generator))
    return torch.tensor([cols[pick] + 0.5, rows[pick] + 0.5])
