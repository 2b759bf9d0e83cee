import random

import pytest
import torch

from evo.genome.real2017.dna import seed_dna
from evo.network.export import ExportError, export_model, load_model
from evo.network.real2017 import build_model
from evo.genome.real2017.mutations import mutate


def test_round_trip_gives_the_same_predictions(tmp_path):
    dna, _ = mutate(seed_dna((3, 8, 8)), random.Random(3), n=12)
    net = build_model(dna).eval()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    path = export_model(tmp_path / "m.pt", dna, net.state_dict(), mean, std, classes=list("abcdefghij"))
    model = load_model(path)
    assert not model.training and model.classes[0] == "a"
    x = torch.rand(4, 3, 8, 8)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model((x * 255).round().to(torch.uint8)),
                               model((x * 255).round() / 255))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ExportError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    torn = tmp_path / "torn.pt"
    dna = seed_dna((3, 8, 8))
    export_model(torn, dna, build_model(dna).state_dict(), (0, 0, 0), (1, 1, 1))
    torn.write_bytes(torn.read_bytes()[:50])
    with pytest.raises(ExportError, match="torn.pt"):
        load_model(torn)
    foreign = tmp_path / "foreign.pt"
    torch.save({"hello": torch.zeros(1)}, foreign)
    with pytest.raises(ExportError, match="not an evo model"):
        load_model(foreign)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ExportError, match="do not fit"):
        export_model(tmp_path / "m.pt", seed_dna((3, 8, 8)), {"convs.e99.weight": torch.zeros(1)}, (0,) * 3, (1,) * 3)
