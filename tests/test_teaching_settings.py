"""capsedu.teaching.settings: CAPSEDU_TEST_MODE chooses between reading-size and test-size runs."""
import pytest

from capsedu.teaching import settings


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), (" TRUE ", True),
                                             ("", False), ("0", False), ("false", False), ("No", False)])
def test_test_mode_reads_the_environment_on_every_call(monkeypatch, value, expected):
    monkeypatch.setenv(settings.TEST_MODE_ENV, value)
    assert settings.test_mode() is expected
    assert settings.pick("reading", "test") == ("test" if expected else "reading")


def test_unset_variable_means_reading_size(monkeypatch):
    monkeypatch.delenv(settings.TEST_MODE_ENV, raising=False)
    assert settings.test_mode() is False
    assert settings.pick(600, 40) == 600
