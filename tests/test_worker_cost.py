"""The cost the worker records for a child (the paper's FLOPs: training steps plus the validation pass),
with each recipe: the fast recipe's test-time flips evaluate every validation image twice."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from evo.genome import space_of  # noqa: E402
from evo.population import Population  # noqa: E402
from evo.worker.loop import EXIT_DONE, run_worker  # noqa: E402

N_VAL = 200
TINY = dict(dataset="synthetic", dataset_kwargs={"n_train": 600, "n_val": N_VAL, "n_test": 200, "image_size": 8},
            population_size=2, steps_per_child=10, lock="flock", max_individuals=3)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("train, passes", [({}, 1), ({"recipe": "fast"}, 2),
                                           ({"recipe": "fast", "tta": False}, 1)])
def test_the_validation_pass_counts_once_per_forward_pass(tmp_path, train, passes):
    root = tmp_path / "pop"
    pop = Population.create(str(root), {**TINY, "train": {"check_every": 5, "poll_every": 2, "batch_size": 20,
                                                          **train}})
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None, device="cpu") == EXIT_DONE
    space = space_of(pop.config)
    inds = list(pop.individuals())
    assert len(inds) == 3 and all(ind.record["outcome"] == "ok" for ind in inds)
    for ind in inds:
        rec, dna = ind.record, space.from_dict(ind.dna())
        forward = space.flops(dna, (3, 8, 8))
        assert rec["forward_flops"] == forward
        assert rec["recipe"] == train.get("recipe", "paper")
        train_part = space.train_flops(dna, (3, 8, 8)) * 20 * 10
        assert rec["flops"] == train_part + forward * N_VAL * passes, (rec["flops"], train_part, forward)
