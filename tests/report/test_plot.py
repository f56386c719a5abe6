"""The plot is a real PNG with the train loss, eval loss and learning-rate curves drawn in it."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from qlorafx.report.plot import EVAL_COLOR, LR_COLOR, TRAIN_COLOR, ema, plot_curves
from tests.report.finished_run import metrics


def pixels_of(image: np.ndarray, color: str) -> int:
    return int((np.abs(image[..., :3] - np.array(to_rgb(color))) < 0.02).all(axis=-1).sum())


def halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return image[: int(image.shape[0] * 0.65)], image[int(image.shape[0] * 0.7):]  # loss panel on top, lr below


def test_png_with_every_curve(tmp_path):
    path = plot_curves(metrics(), tmp_path / "curves.png", "a title")
    image = imread(path)
    assert image.shape[:2] == (720, 960)  # 8 x 6 inches at 120 dpi
    top, bottom = halves(image)
    assert pixels_of(top, TRAIN_COLOR) > 300
    assert pixels_of(top, EVAL_COLOR) > 100
    assert pixels_of(bottom, LR_COLOR) > 300
    assert pixels_of(top, LR_COLOR) < 50 and pixels_of(bottom, TRAIN_COLOR) < 50  # each in its own panel


def test_without_evaluations_there_is_no_eval_curve(tmp_path):
    image = imread(plot_curves([r for r in metrics() if "eval_loss" not in r], tmp_path / "c.png", "t"))
    assert pixels_of(image, EVAL_COLOR) == 0
    assert pixels_of(image, TRAIN_COLOR) > 300


def test_no_records_still_makes_an_image(tmp_path):
    image = imread(plot_curves([], tmp_path / "c.png", "empty"))
    assert image.shape[:2] == (720, 960)
    assert pixels_of(image, TRAIN_COLOR) == pixels_of(image, LR_COLOR) == 0


def test_ema_starts_at_the_data_and_smooths():
    assert ema([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])
    smoothed = ema([0.0, 10.0] * 20)
    assert smoothed[0] == 0.0
    assert max(smoothed[-10:]) - min(smoothed[-10:]) < 2.0  # raw swings by 10


def test_many_logs_are_drawn_smoothed_over_the_raw_curve(tmp_path):
    image = imread(plot_curves(metrics(steps=400, every=2), tmp_path / "c.png", "long run"))
    assert pixels_of(halves(image)[0], TRAIN_COLOR) > 300
