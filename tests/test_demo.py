"""`evo demo` end to end, shrunk: local worker processes, progress, leaderboard, plot, export."""

from __future__ import annotations

from click.testing import CliRunner

import evo
from evo.cli import main
from evo.demo import DEMO_CONFIG, run_demo


def test_demo_config_is_valid():
    from evo.population import Config

    Config.from_dict(dict(DEMO_CONFIG)).validate()


def test_demo_runs_to_its_budget_and_reports(tmp_path, monkeypatch):
    import evo.demo as demo_mod

    small = {**DEMO_CONFIG, "dataset_kwargs": {"n_train": 600, "n_val": 200, "n_test": 200, "image_size": 8},
             "population_size": 4}
    monkeypatch.setattr(demo_mod, "DEMO_CONFIG", small)
    d = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", str(d), "--workers", "2", "--max-individuals", "10",
                                       "--steps-per-child", "20"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "born" in out and "best val acc" in out          # live progress
    assert "10 individuals trained" in out
    assert "top 5 of 10 individuals" in out                  # the leaderboard
    png = (d / "progress.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    model = evo.load_model(d / "best-model.pt")
    assert not model.training
    # a second run continues the finished population and stops at once
    again = run_demo(d, workers=1, echo=lambda m: None, interval_s=0.2)
    assert again["born"] == 10
