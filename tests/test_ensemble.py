"""One-file ensembles: export, evo.load_model, the mean of the members' softmax."""

import random

import pytest
import torch

import evo
from evo.genome.real2017.dna import seed_dna
from evo.genome.real2017.mutations import mutate
from evo.network.ensemble import EnsembleModel, export_ensemble
from evo.network.export import ExportError, export_model
from evo.network.real2017 import build_model

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def member(seed: int, num_classes: int = 10, shape=(3, 8, 8)) -> dict:
    rng = random.Random(seed)
    dna = seed_dna(input_shape=shape, num_classes=num_classes)
    for _ in range(8):
        dna, _ = mutate(dna, rng)
    torch.manual_seed(seed)
    net = build_model(dna)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape) * 0.1)
    return {"dna": dna, "state_dict": net.state_dict(), "mean": MEAN, "std": STD,
            "classes": [str(i) for i in range(num_classes)], "meta": {"id": seed}}


def test_export_and_load_average_the_members_softmax(tmp_path):
    members = [member(s) for s in (1, 2, 3)]
    path = export_ensemble(tmp_path / "ens.pt", members, meta={"ids": [1, 2, 3]})
    ens = evo.load_model(path)
    assert isinstance(ens, EnsembleModel) and not ens.training
    assert len(ens.members) == 3 and ens.meta == {"ids": [1, 2, 3]} and ens.classes[0] == "0"
    x = torch.rand(5, 3, 8, 8)
    singles = []
    for i, m in enumerate(members):
        export_model(tmp_path / f"m{i}.pt", m["dna"], m["state_dict"], MEAN, STD)
        singles.append(torch.softmax(evo.load_model(tmp_path / f"m{i}.pt")(x), dim=1))
    with torch.no_grad():
        p = ens(x)
        torch.testing.assert_close(p, torch.stack(singles).mean(0))
        torch.testing.assert_close(p.sum(1), torch.ones(5))
        torch.testing.assert_close(ens((x * 255).round().to(torch.uint8)), ens((x * 255).round() / 255))
    assert [m.meta["id"] for m in ens.members] == [1, 2, 3]


def test_bad_ensembles_are_refused(tmp_path):
    with pytest.raises(ExportError, match="at least one member"):
        export_ensemble(tmp_path / "e.pt", [])
    with pytest.raises(ExportError, match="different numbers of classes"):
        export_ensemble(tmp_path / "e.pt", [member(1), member(2, num_classes=5)])
    with pytest.raises(ExportError, match="different inputs"):
        export_ensemble(tmp_path / "e.pt", [member(1), member(2, shape=(3, 16, 16))])
    wrong = dict(member(1), state_dict=member(2)["state_dict"])
    if set(wrong["state_dict"]) != set(build_model(wrong["dna"]).state_dict()):
        with pytest.raises(ExportError, match="do not fit"):
            export_ensemble(tmp_path / "e.pt", [wrong])
    assert not (tmp_path / "e.pt").exists()
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(ExportError, match="torn.pt"):
        evo.load_model(tmp_path / "torn.pt")


def test_evo_export_top_k_ensemble(population, history, tmp_path):
    """`evo export POPDIR --top K --ensemble -o ens.pt`: the K best with weights, softmax averaged."""
    import json

    from click.testing import CliRunner

    from evo.analysis.models import load_individual_model, load_population_dataset
    from evo.cli import main
    from evo.network.data import normalize

    f = tmp_path / "ens.pt"
    res = CliRunner().invoke(main, ["export", str(population), "--top", "3", "--ensemble", "-o", str(f), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    expect = [r.id for r in history.ranked() if history.checkpoint(r.id)][:3]
    assert d["ids"] == expect and len(expect) == 3
    ens = evo.load_model(f)
    assert isinstance(ens, EnsembleModel) and ens.meta["ids"] == expect
    ds = load_population_dataset(history)
    x = ds.test_x[:50]
    xn = normalize(x, torch.tensor(ds.mean), torch.tensor(ds.std))
    with torch.no_grad():
        ref = torch.stack([torch.softmax(load_individual_model(history, i)(xn), 1) for i in expect]).mean(0)
        torch.testing.assert_close(ens(x), ref, atol=1e-5, rtol=1e-4)
    text = CliRunner().invoke(main, ["export", str(population), "--top", "2", "--ensemble", "-o", str(f)]).output
    assert "ensemble of 2" in text and "evo.load_model" in text
    for bad in (["--top", "2"], ["--ensemble", "--best"], ["--top", "2", "--ensemble", "--best"]):
        res = CliRunner().invoke(main, ["export", str(population), *bad, "-o", str(tmp_path / "x.pt")])
        assert res.exit_code != 0 and "--top K --ensemble" in res.output
    assert not (tmp_path / "x.pt").exists()
