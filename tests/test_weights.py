"""Tests of evo.network.weights: the one weights loader and its errors."""
from __future__ import annotations

import pytest
import torch

from evo.network.weights import WeightsError, load_state_dict, load_weights


def test_weights_and_training_states_load(tmp_path):
    sd = {"w": torch.arange(4.0)}
    torch.save(sd, tmp_path / "w.pt")
    torch.save({"format": 1, "model": sd, "step": 3}, tmp_path / "state.pt")
    assert torch.equal(load_weights(tmp_path / "w.pt")["w"], sd["w"])
    assert torch.equal(load_state_dict(tmp_path / "state.pt")["w"], sd["w"])


def test_missing_torn_foreign_and_code_carrying_files_are_one_clear_error(tmp_path):
    with pytest.raises(WeightsError, match=r"missing\.pt does not exist.*fix:"):
        load_weights(tmp_path / "missing.pt")
    torch.save({"w": torch.zeros(1000)}, tmp_path / "ok.pt")
    torn = tmp_path / "torn.pt"
    torn.write_bytes((tmp_path / "ok.pt").read_bytes()[:300])
    with pytest.raises(WeightsError, match=r"torn\.pt is damaged"):
        load_weights(torn)
    code = tmp_path / "code.pt"
    torch.save({"f": print}, code)  # a pickle that names a callable: refused by weights_only
    with pytest.raises(WeightsError, match=r"code\.pt"):
        load_weights(code)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="holds no network weights"):
        load_state_dict(tmp_path / "list.pt", fix="do X")


def test_the_callers_error_type_and_fix():
    class MyError(WeightsError):
        pass

    with pytest.raises(MyError, match="fix: run it again"):
        load_weights("/nonexistent/x.pt", error=MyError, fix="run it again")


def test_a_network_is_loaded_strictly_from_its_genome_and_a_mismatch_names_the_file(tmp_path):
    from evo.genome import search_space
    from evo.network.weights import checkpoint_check, load_network

    space = search_space("real2017")
    dna = space.seed((3, 8, 8), 10)
    state = space.build(dna).state_dict()
    state["head.bias"] = torch.full_like(state["head.bias"], 0.5)
    torch.save(state, tmp_path / "ok.pt")
    net = load_network(space, dna, tmp_path / "ok.pt")
    assert not net.training and torch.equal(net.state_dict()["head.bias"], state["head.bias"])
    checkpoint_check(space)(str(tmp_path / "ok.pt"), space.to_dict(dna))
    wrong = dict(state, **{"head.weight": torch.zeros(10, 4), "extra": torch.zeros(1)})
    del wrong["head.bias"]
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match=r"wrong\.pt does not fit its genome \(missing head\.bias; unexpected "
                                           r"extra; shape of head\.weight \(10, 4\) instead of \(10, 3\)\); fix:"):
        load_network(space, dna, tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        checkpoint_check(space)(str(tmp_path / "wrong.pt"), space.to_dict(dna))
