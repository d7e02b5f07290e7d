"""Every example runs end to end and writes what it says."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import image_features  # noqa: E402
import monte_carlo_pi  # noqa: E402


def test_monte_carlo_pi_estimates_pi_per_seed_and_resumes(tmp_path) -> None:
    report, summary = monte_carlo_pi.run(tmp_path, seeds=300, samples=5_000, executor="processes", progress=False)
    assert report.items_done == 300 and summary["seeds"] == 300
    assert abs(summary["error"]) < 5 * summary["standard_error"] + 1e-3
    assert np.allclose(monte_carlo_pi.estimate_pi(7, 5_000), monte_carlo_pi.estimate_pi(7, 5_000))
    again, same = monte_carlo_pi.run(tmp_path, seeds=300, samples=5_000, executor="serial", progress=False)
    assert again.items_skipped == 300 and same == summary


def test_image_features_land_in_consolidated_h5_shards(tmp_path) -> None:
    report, features = image_features.run(tmp_path, images=300, executor="threads", progress=False)
    assert features.shape == (300, 16) and report.consolidations == 1
    assert list(tmp_path.rglob("*.h5")), "consolidation should have written HDF5 shard files"
    task = image_features.ImageFeatures()
    task.setup()
    np.testing.assert_allclose(features[17], task.process_item(17), rtol=1e-6)
    assert math.isclose(float(features[:, 8:].sum(axis=1).min()), 1.0, abs_tol=0.05)  # histograms cover the pixels


@pytest.mark.slow
def test_demo_prints_where_the_results_are_and_a_summary() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "results: " in out and "summary: pi ~ 3.1" in out and "1000 seeds already done" in out
