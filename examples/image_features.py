"""Feature vectors of synthetic images, saved into an HDF5-sharded zarr store and consolidated at the end.

Each item is an image seed; the task renders a 64x64 image of a few Gaussian
blobs and returns 16 features (intensity statistics, a histogram, gradient
energy). Rows land in loose chunk files while the run goes; ``consolidate="end"``
packs them into ``.h5`` shard files once it is finished.

Run: python examples/image_features.py [DIRECTORY] [--images N] [--executor serial|threads|processes]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zsaver import Task, TaskManager, TaskReport, ZarrSaver
from zsaver.stores import H5ShardStore

SIZE = 64
N_FEATURES = 16


def render(seed: int) -> np.ndarray:
    """A reproducible 64x64 float32 image: a few Gaussian blobs plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    image = rng.normal(0, 0.05, (SIZE, SIZE)).astype(np.float32)
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(0, SIZE, 2)
        width = rng.uniform(2, 10)
        image += rng.uniform(0.5, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    return image


class ImageFeatures(Task):
    """16 features per image; ``process_items`` renders and measures a whole batch at once."""

    def setup(self) -> None:
        # Once per worker: the histogram bin edges every image shares.
        self.edges = np.linspace(-0.2, 1.5, 9, dtype=np.float32)

    def process_item(self, item: int, **kwargs: object) -> np.ndarray:
        return self.process_items([item])[0]

    def process_items(self, items: Sequence[int], **kwargs: object) -> np.ndarray:
        images = np.stack([render(seed) for seed in items])
        flat = images.reshape(len(items), -1)
        gy, gx = np.gradient(images, axis=(1, 2))
        hist = np.stack([np.histogram(row, bins=self.edges)[0] for row in flat]) / flat.shape[1]
        stats = np.stack(
            [flat.mean(1), flat.std(1), flat.min(1), flat.max(1), np.median(flat, axis=1),
             (flat > 0.5).mean(1), (gx**2 + gy**2).mean(axis=(1, 2)), np.abs(gx).mean(axis=(1, 2))],
            axis=1,
        )
        return np.concatenate([stats, hist], axis=1).astype(np.float32)


def run(directory: str | Path, images: int = 2_000, executor: str = "processes",
        progress: bool = True) -> tuple[TaskReport, np.ndarray]:
    """Compute (or finish) the features into an H5ShardStore under ``directory``."""
    store = H5ShardStore(directory)
    saver = ZarrSaver(store, "features", chunks=128)
    report = TaskManager(ImageFeatures, executor=executor, batch_size=64).submit_tasks(
        range(images), saver, save_interval=256, consolidate="end", progress=progress
    )
    return report, saver.array[:]


def main() -> None:
    parser = argparse.ArgumentParser(description="Feature vectors of synthetic images into a sharded store.")
    parser.add_argument("directory", nargs="?", default=None, help="store root (default: a temp dir)")
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--executor", default="processes")
    args = parser.parse_args()
    directory = args.directory or tempfile.mkdtemp(prefix="zsaver-features-")
    report, features = run(directory, args.images, args.executor)
    shards = sorted(p.name for p in Path(directory).rglob("*.h5"))
    print(f"results: {Path(directory).resolve()} (zarr array 'features' in {len(shards)} HDF5 shard file(s))")
    print(f"run: {report}")
    print(f"features: {features.shape}, mean brightness {features[:, 0].mean():.3f}, "
          f"mean gradient energy {features[:, 6].mean():.4f}")


if __name__ == "__main__":
    main()
