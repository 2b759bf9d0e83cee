import json

import pytest

from evo.genome.real2017.dna import DNA, DNAError, FORMAT_VERSION, seed_dna
from genomes import small_convnet


def test_seed_is_the_papers_trivial_model():
    d = seed_dna()
    assert d.learning_rate == 0.1
    assert d.conv_edges == []
    assert d.shapes()[d.output_vertex] == (3, 32, 32)
    assert d.depth() == 0


def test_json_round_trip_is_exact():
    d = small_convnet().replace(learning_rate=0.1 * 2 ** 0.37)
    text = d.to_json()
    back = DNA.from_json(text)
    assert back == d
    assert back.to_json() == text
    assert json.loads(text)["format_version"] == FORMAT_VERSION


def test_shapes_follow_primary_inputs():
    shapes = small_convnet().shapes()
    assert shapes[1] == (8, 32, 32)
    assert shapes[2] == (16, 16, 16)
    assert shapes[3] == (16, 16, 16)  # the skip from vertex 1 is reshaped to the primary


def test_odd_sizes_round_up_with_stride():
    d = small_convnet().replace(input_shape=(1, 7, 9))
    assert d.shapes()[2] == (16, 4, 5)


def _with_edge(d: DNA, eid: int, **changes) -> DNA:
    import dataclasses
    return d.with_edges(dataclasses.replace(e, **changes) if e.id == eid else e for e in d.edges)


@pytest.mark.parametrize(
    "mutate_dict, message",
    [
        (lambda d: d["edges"][0].update(kernel=[2, 3]), "odd"),
        (lambda d: d["edges"][0].update(stride=3), "power of two"),
        (lambda d: d["edges"][0].update(channels=0), "channels"),
        (lambda d: d.update(format_version=FORMAT_VERSION + 1), "newer than this evo"),
        (lambda d: d.update(learning_rate=-1), "learning_rate"),
        (lambda d: d["vertices"].append({"id": 99, "type": "LINEAR"}), "next_id"),
        (lambda d: d["edges"][1].update(type="POOL"), "unknown type"),
        (lambda d: d["edges"].append({"id": 8, "src": 3, "dst": 1, "type": "IDENTITY", "skip": True}) or d.update(next_id=9), "cycle"),
    ],
)
def test_validation_names_the_problem(mutate_dict, message):
    d = small_convnet().to_dict()
    mutate_dict(d)
    with pytest.raises(DNAError, match=message):
        DNA.from_dict(d)


def test_unknown_keys_are_ignored_as_the_format_promises():
    """docs/format.md: readers ignore unknown keys (a newer writer may add some)."""
    d = small_convnet().to_dict()
    d["extra"] = 1
    d["edges"][0]["colour"] = "red"
    d["vertices"][1]["note"] = {"any": "thing"}
    assert DNA.from_dict(d) == small_convnet()


def test_dna_errors_are_genome_errors():
    from evo.genome import GenomeError

    with pytest.raises(GenomeError, match="odd"):
        DNA.from_dict({**small_convnet().to_dict(), "edges": [{**small_convnet().to_dict()["edges"][0], "kernel": [2, 3]}]})
    assert issubclass(DNAError, ValueError)


def test_unreachable_vertex_is_reported():
    d = small_convnet().to_dict()
    d["vertices"].append({"id": 8, "type": "LINEAR"})
    d["vertices"].append({"id": 9, "type": "LINEAR"})
    d["edges"].append({"id": 10, "src": 8, "dst": 9, "type": "IDENTITY", "skip": False})
    d["edges"].append({"id": 11, "src": 9, "dst": 8, "type": "IDENTITY", "skip": True})
    d["edges"].append({"id": 12, "src": 9, "dst": 3, "type": "IDENTITY", "skip": True})
    d["next_id"] = 13
    with pytest.raises(DNAError):
        DNA.from_dict(d)
    # without the cycle: 8 has no input at all
    d["edges"] = [e for e in d["edges"] if e["id"] != 11]
    with pytest.raises(DNAError, match="primary"):
        DNA.from_dict(d)


def test_two_primary_inputs_rejected():
    d = small_convnet().to_dict()
    d["edges"][3]["skip"] = False
    with pytest.raises(DNAError, match="exactly one primary"):
        DNA.from_dict(d)


def test_not_json():
    with pytest.raises(DNAError, match="not valid JSON"):
        DNA.from_json("{torn")
