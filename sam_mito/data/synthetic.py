"""Synthetic EM volumes with exact mitochondria masks: the offline demo data and the test data.

The generator draws a seeded 3-D scene and renders it slice by slice, so structures persist across
neighbouring slices the way they do in a FIB-SEM stack:

* a textured cytoplasm background (smooth density variation plus fine grain),
* cell membranes: dark curved lines on the borders of slowly drifting Voronoi cells,
* mitochondria: ellipsoids with a dark double membrane, a dark matrix and light cristae lamellae,
* distractors that are *not* mitochondria: small round vesicles and uniformly dark dense bodies,
* blur and sensor noise.

Only the mitochondria are foreground in the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class _Body:
    """An ellipsoid in (z, y, x) with in-plane rotation ``theta``."""

    z: float
    y: float
    x: float
    a: float
    b: float
    c: float
    theta: float
    period: float
    phase: float


def _draw_bodies(
    rng: np.random.Generator, count: int, shape: tuple[int, int, int], sizes: tuple, *, separate: bool = True
) -> list[_Body]:
    depth, height, width = shape
    (a_lo, a_hi), (ratio_lo, ratio_hi), (c_lo, c_hi) = sizes
    bodies: list[_Body] = []
    for _ in range(count * 20):
        if len(bodies) == count:
            break
        a = rng.uniform(a_lo, a_hi)
        c = rng.uniform(c_lo, c_hi)
        body = _Body(
            z=rng.uniform(-0.5 * c, depth + 0.5 * c),
            y=rng.uniform(0, height),
            x=rng.uniform(0, width),
            a=a,
            b=a * rng.uniform(ratio_lo, ratio_hi),
            c=c,
            theta=rng.uniform(0, np.pi),
            period=rng.uniform(5.0, 9.0),
            phase=rng.uniform(0, 2 * np.pi),
        )
        if not separate or all(_apart(body, other) for other in bodies):
            bodies.append(body)
    return bodies


def _apart(p: _Body, q: _Body) -> bool:
    planar = np.hypot(p.y - q.y, p.x - q.x) / (p.a + q.a + 6)
    vertical = abs(p.z - q.z) / (p.c + q.c)
    return planar**2 + vertical**2 > 1.0


def _section(body: _Body, z: int, height: int, width: int):
    """Window, normalised radius and along-axis coordinate of a body's cross-section at slice ``z``."""
    scale2 = 1.0 - ((z - body.z) / body.c) ** 2
    if scale2 <= 0.05:
        return None
    scale = np.sqrt(scale2)
    a, b = body.a * scale, body.b * scale
    reach = int(np.ceil(a * 1.1)) + 2
    y0, y1 = max(int(body.y) - reach, 0), min(int(body.y) + reach + 1, height)
    x0, x1 = max(int(body.x) - reach, 0), min(int(body.x) + reach + 1, width)
    if y0 >= y1 or x0 >= x1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - body.y, xx - body.x
    u = dx * np.cos(body.theta) + dy * np.sin(body.theta)
    v = -dx * np.sin(body.theta) + dy * np.cos(body.theta)
    radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (slice(y0, y1), slice(x0, x1)), radius, u


class SyntheticEM:
    """A seeded synthetic EM scene of a given ``(slices, height, width)`` shape.

    Parameters
    ----------
    shape : tuple of int
        ``(slices, height, width)`` of the volume.
    seed : int
        Seed of the scene; the same seed and shape always render the same volume.
    mito_density : float
        Mitochondria cross-sections per megapixel of a slice, on average.
    """

    def __init__(self, shape: tuple[int, int, int], *, seed: int = 0, mito_density: float = 20.0) -> None:
        depth, height, width = shape
        self.shape = (int(depth), int(height), int(width))
        self.seed = seed
        rng = np.random.default_rng(seed)
        area = height * width / MEGAPIXEL
        span = depth + 20.0
        self.mitos = _draw_bodies(
            rng, max(2, int(mito_density * area * span / 24)), self.shape, ((18, 48), (0.45, 0.9), (8, 20))
        )
        self.vesicles = _draw_bodies(
            rng, int(200 * area * span / 8), self.shape, ((2, 6), (0.8, 1.0), (2, 5)), separate=False
        )
        self.dense = _draw_bodies(rng, int(6 * area * span / 16), self.shape, ((10, 22), (0.5, 0.9), (5, 12)))
        n_cells = max(4, int(45 * area))
        self.cell_seeds = rng.uniform((0, 0), (height, width), size=(n_cells, 2))
        self.cell_drift = rng.normal(0, 0.8, size=(n_cells, 2))
        self.fields = [ndimage.gaussian_filter(rng.normal(size=(height, width)), 24) for _ in range(2)]
        self.fields = [f / (f.std() + 1e-8) for f in self.fields]

    def __len__(self) -> int:
        return self.shape[0]

    def render(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        """Render slice ``z`` as ``(image uint8 (H, W), mask uint8 in {0, 1} (H, W))``."""
        _, height, width = self.shape
        rng = np.random.default_rng([self.seed, z])
        t = z / max(len(self) - 1, 1)
        image = 160.0 + 18.0 * ((1 - t) * self.fields[0] + t * self.fields[1])
        image += 14.0 * ndimage.gaussian_filter(rng.normal(size=(height, width)), 1.2)
        image -= 95.0 * self._membranes(z)
        mask = np.zeros((height, width), np.uint8)
        for body in self.vesicles:
            if (sec := _section(body, z, height, width)) is not None:
                window, radius, _ = sec
                image[window] = np.where(radius <= 1.0, np.where(radius > 0.6, 95.0, 150.0), image[window])
        for body in self.dense:
            if (sec := _section(body, z, height, width)) is not None:
                window, radius, _ = sec
                image[window] = np.where(radius <= 1.0, 72.0 + 8 * radius, image[window])
        for body in self.mitos:
            if (sec := _section(body, z, height, width)) is not None:
                window, radius, u = sec
                cristae = np.cos(2 * np.pi * u / body.period + body.phase) > 0.55
                inside = np.where(cristae & (radius < 0.8), 135.0, 92.0)
                inside = np.where(radius > 0.86, 50.0, inside)
                halo = (radius > 1.0) & (radius < 1.12)
                image[window] = np.where(
                    radius <= 1.0, inside, np.where(halo, image[window] + 12, image[window])
                )
                mask[window] |= (radius <= 1.0).astype(np.uint8)
        image = ndimage.gaussian_filter(image, 0.9) + rng.normal(0, 10.0, size=(height, width))
        return np.clip(np.round(image), 0, 255).astype(np.uint8), mask

    def _membranes(self, z: int) -> np.ndarray:
        _, height, width = self.shape
        seeds = self.cell_seeds + z * self.cell_drift
        yy = np.arange(height, dtype=np.float32)[:, None] + 10.0 * self.fields[0]
        xx = np.arange(width, dtype=np.float32)[None, :] + 10.0 * self.fields[1]
        nearest = np.full((height, width), np.inf, np.float32)
        second = np.full((height, width), np.inf, np.float32)
        for sy, sx in seeds:
            dist = np.sqrt((yy - sy) ** 2 + (xx - sx) ** 2)
            second = np.minimum(second, np.maximum(nearest, dist))
            nearest = np.minimum(nearest, dist)
        return np.exp(-(((second - nearest) / 3.0) ** 2))

    def volume(self) -> tuple[np.ndarray, np.ndarray]:
        """Render every slice: ``(images (Z, H, W) uint8, masks (Z, H, W) uint8 in {0, 1})``."""
        pairs = [self.render(z) for z in range(len(self))]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def synthetic_volume(
    shape: tuple[int, int, int] = (16, 256, 256), *, seed: int = 0, mito_density: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a synthetic EM image stack and its exact mitochondria mask stack.

    Parameters
    ----------
    shape : tuple of int
        ``(slices, height, width)``.
    seed : int
        Scene seed; generation is deterministic.
    mito_density : float
        Mitochondria cross-sections per megapixel of a slice, on average.

    Returns
    -------
    tuple of numpy.ndarray
        ``uint8`` images and ``uint8`` masks in {0, 1}, both of ``shape``.
    """
    return SyntheticEM(shape, seed=seed, mito_density=mito_density).volume()
