"""The running counters (state.json)."""

import os

from popkit import make


def test_state_is_rewritten_in_place_and_never_torn_by_shrinking(tmp_path):
    pop = make(tmp_path, population_size=3)
    big = {"trained": 7, "flops": 1.0, "top": [[0.5, i] for i in range(50)]}
    pop.counters.write(big)
    ino = os.stat(pop.counters.path).st_ino
    pop.counters.write({"trained": 8, "flops": 2.0, "top": []})
    assert os.stat(pop.counters.path).st_ino == ino  # in place: no new file
    st = pop.read_state()
    assert st["trained"] == 8 and st["top"] == []
