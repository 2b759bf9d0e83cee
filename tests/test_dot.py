import shutil


from evo.genome.real2017.dot import render, to_dot
from slurm_cluster import unavailable
from genomes import small_convnet


def test_dot_names_every_vertex_and_edge():
    d = small_convnet()
    src = to_dot(d, title="individual 7")
    for v in d.vertices:
        assert f"v{v.id} [" in src
    for e in d.edges:
        assert f"v{e.src} -> v{e.dst}" in src
    assert "conv 5x3 /2" in src and "style=dashed" in src and "individual 7" in src
    assert src.count("{") == src.count("}")


def test_render_png(tmp_path):
    if shutil.which("dot") is None:
        unavailable("Graphviz `dot` is not installed (apt-get install graphviz)")
    out = render(to_dot(small_convnet()), tmp_path / "g.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
