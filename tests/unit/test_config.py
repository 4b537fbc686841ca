"""Settings precedence: flags > environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.config import Settings


def test_environment_beats_the_config_file_and_flags_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tiergate.toml"
    config.write_text("parallel = 3\nport = 9001\nflex_wait_ms = 20\n")
    monkeypatch.setenv("TIERGATE_PARALLEL", "5")
    monkeypatch.setenv("TIERGATE_PORT", "9002")
    settings = Settings.load(config, data_dir=tmp_path / "d", port=9003)
    assert settings.parallel == 5
    assert settings.port == 9003
    assert settings.flex_wait_ms == 20
