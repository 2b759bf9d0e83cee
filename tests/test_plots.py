"""Tests of evo.plots: every figure written as a real image from a real short run."""

from __future__ import annotations


import numpy as np
import pytest

from evo import analysis, plots
from populations import PNG_SIGNATURE, assert_real_png, make_fake_population

@pytest.mark.parametrize("axis", ["time"])  # "flops": test_cli_inspect.py; "individuals": the SVG below
def test_progress_figure(population, tmp_path, axis):
    out = tmp_path / f"progress-{axis}.png"
    fig = plots.progress_figure(population, axis, path=out)
    img = assert_real_png(out)
    # the ancestry of the best is drawn in red (#dc2626)
    rgb = (img[..., :3] * 255).astype(int)
    red = (abs(rgb[..., 0] - 0xDC) < 12) & (abs(rgb[..., 1] - 0x26) < 12) & (abs(rgb[..., 2] - 0x26) < 12)
    assert red.sum() > 20
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "alive" in labels and "best so far" in labels and any(lab.startswith("ancestry") for lab in labels)


def test_progress_figure_svg_and_history(population, tmp_path):
    h = analysis.load(population)
    out = tmp_path / "p.svg"
    plots.progress_figure(h, "individuals", path=out, title="a title")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_compare_runs(population, tmp_path):
    other = make_fake_population(tmp_path / "fake", 200, 10)
    h = analysis.load(population)
    tab = plots.compare_runs_table([h, h], "time", points=50)
    assert np.allclose(tab["std"][~np.isnan(tab["std"])], 0.0)
    assert tab["final_mean"] == h.best().fitness and tab["final_std"] == 0.0
    # the best accuracy is first reached where the best-so-far curve first stands at it
    c = h.best_so_far("time")
    first = min(x for x, y in zip(c.x, c.y) if y == h.best().fitness)
    assert [r["best_reached_at"] for r in tab["runs"]] == [first, first]
    for axis in ("time", "flops"):
        out = tmp_path / f"cmp-{axis}.png"
        plots.compare_runs_figure([population, other, h], axis, path=out, labels=["real", "fake", "again"])
        assert_real_png(out)


def test_architecture_trends(population, tmp_path):
    out = tmp_path / "trends.png"
    fig = plots.architecture_trends_figure(population, bins=5, path=out)
    assert len(fig.axes) == 6
    assert_real_png(out, (400, 600))


def test_empty_population(tmp_path):
    from evo.population import Population

    Population.create(str(tmp_path / "empty"), dataset="synthetic", population_size=3, lock="none")
    out = tmp_path / "empty.png"
    plots.progress_figure(tmp_path / "empty", path=out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    plots.architecture_trends_figure(tmp_path / "empty", path=tmp_path / "t.png")
    plots.compare_runs_figure([tmp_path / "empty"], path=tmp_path / "c.png")
