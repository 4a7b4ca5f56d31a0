"""capsedu.teaching.curves: running means of training histories."""
import numpy as np

from capsedu.teaching.curves import running_mean, smooth_histories


def test_running_mean_places_each_window_mean_at_its_last_step():
    steps, means = running_mean([4, 2, 0, 2], window=2)
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_allclose(means, [3, 1, 1])


def test_running_mean_clips_the_window_to_the_run():
    steps, means = running_mean([1, 2, 6], window=10)
    np.testing.assert_array_equal(steps, [2])
    np.testing.assert_allclose(means, [3])
    steps, means = running_mean([1, 2], window=0)
    np.testing.assert_allclose(means, [1, 2])


def test_smooth_histories_smooths_loss_and_accuracy_of_every_run():
    out = smooth_histories({"a": {"loss": [4, 2, 0, 2], "accuracy": [0, 1, 1, 0], "margin": [9, 9, 9, 9]}}, window=2)
    assert set(out["a"]) == {"loss", "accuracy"}
    np.testing.assert_allclose(out["a"]["loss"][1], [3, 1, 1])
    np.testing.assert_allclose(out["a"]["accuracy"][1], [0.5, 1, 0.5])
