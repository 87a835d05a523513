"""Rebuild the packaged tiny SAM base: full pretraining on generic synthetic shapes (never EM).

A randomly initialised SAM cannot stand in for a pretrained base: with a random frozen image
encoder, decoder-only fine-tuning learns nothing. Real SAM weights were pretrained on generic
images; this script gives a tiny SAM the same kind of start on random scenes of shapes and
textures, each object prompted by its box or by a point inside it, so that the library's
fine-tuning path can be demonstrated and tested offline.

    python -m sam_mito.training.tiny_base --out sam_mito/assets/tiny-sam-base --steps 2000
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from sam_mito.models.loading import processor_for, tiny_sam_config
from sam_mito.training.losses import DiceCELoss

logger = logging.getLogger(__name__)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.normal(size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return np.zeros((size, size), np.float32)
    if kind == 1:
        yy, xx = np.mgrid[0:size, 0:size]
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
        return np.sign(np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)).astype(
            np.float32
        )
    if kind == 2:
        return rng.normal(size=(size, size)).astype(np.float32)
    return _smooth_noise(rng, size, int(rng.integers(3, 12)))


def _shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = Image.new("L", (size, size))
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.uniform(0, size, 2)
    radius = rng.uniform(8, size * 0.35)
    kind = rng.integers(3)
    if kind == 0:
        rx, ry = radius, radius * rng.uniform(0.3, 1.0)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        canvas = canvas.rotate(rng.uniform(0, 180), center=(cx, cy))
    else:
        n = 4 if kind == 1 else int(rng.integers(3, 9))
        angles = (
            np.sort(rng.uniform(0, 2 * np.pi, n))
            if kind == 2
            else np.arange(4) * np.pi / 2 + rng.uniform(0, np.pi)
        )
        radii = radius * (rng.uniform(0.5, 1.0, n) if kind == 2 else np.ones(n))
        draw.polygon(
            [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)], fill=1
        )
    return np.asarray(canvas, dtype=bool)


def generic_scene(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    """A random scene of textured shapes: ``(uint8 image (H, W), visible mask of each object)``."""
    base = rng.uniform(40, 215)
    image = base + rng.uniform(5, 40) * _smooth_noise(rng, size, int(rng.integers(2, 10)))
    visible: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 7))):
        mask = _shape_mask(rng, size)
        if mask.sum() < 30:
            continue
        shade = float(np.clip(base + rng.choice([-1, 1]) * rng.uniform(30, 110), 0, 255))
        fill = shade + rng.uniform(0, 30) * _texture(rng, size)
        image = np.where(mask, fill, image)
        visible = [v & ~mask for v in visible] + [mask]
    image = image + rng.normal(0, rng.uniform(0, 15), (size, size))
    objects = [v for v in visible if v.sum() >= 30]
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _batch(rng: np.random.Generator, batch_size: int, size: int, use_points: bool):
    images, prompts, targets = [], [], []
    while len(images) < batch_size:
        image, objects = generic_scene(rng, size)
        if not objects:
            continue
        target = objects[int(rng.integers(len(objects)))]
        ys, xs = np.nonzero(target)
        if use_points:
            k = int(rng.integers(len(ys)))
            prompts.append([[float(xs[k]), float(ys[k])]])
        else:
            box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
            prompts.append((box + rng.uniform(-8, 8, 4)).clip(0, size - 1).tolist())
        images.append(np.repeat(image[..., None], 3, axis=-1))
        targets.append(target)
    return images, prompts, torch.tensor(np.stack(targets), dtype=torch.float32)[:, None]


def pretrain(
    out_dir: str, *, steps: int = 2000, batch_size: int = 8, lr: float = 1e-3, seed: int = 0
) -> None:
    """Pretrain a tiny SAM in full on generic scenes and save model + processor to ``out_dir``."""
    from transformers import SamModel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = tiny_sam_config()
    model, processor = SamModel(config), processor_for(config)
    size = config.vision_config.image_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    loss_fn = DiceCELoss()
    model.train()
    progress = tqdm(range(steps), desc="pretraining tiny SAM on generic shapes")
    for step in progress:
        use_points = step % 2 == 1
        images, prompts, targets = _batch(rng, batch_size, size, use_points)
        if use_points:
            inputs = processor(images=images, input_points=[[p] for p in prompts], return_tensors="pt")
            prompt = {"input_points": inputs["input_points"].float()}
        else:
            inputs = processor(images=images, input_boxes=[[p] for p in prompts], return_tensors="pt")
            prompt = {"input_boxes": inputs["input_boxes"].float()}
        outputs = model(pixel_values=inputs["pixel_values"], multimask_output=False, **prompt)
        logits = F.interpolate(
            outputs.pred_masks[:, 0], size=(size, size), mode="bilinear", align_corners=False
        )
        with torch.no_grad():
            predicted = logits > 0
            iou = (predicted & (targets > 0)).sum((2, 3)) / ((predicted | (targets > 0)).sum((2, 3)) + 1e-6)
        loss = loss_fn(logits, targets) + F.mse_loss(outputs.iou_scores[:, 0], iou)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.info("saved tiny SAM base to %s", out_dir)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m sam_mito.training.tiny_base --out DIR``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    pretrain(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)


if __name__ == "__main__":
    main()
