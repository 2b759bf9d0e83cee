"""Function-preserving inheritance for real2017 networks (Net2Net, Chen et al. 2015; Cai et al. 2017).

:func:`preserve_function` gives a child DNA the weights that make its network, in eval mode, compute
the parent's function wherever the mutations allow it:

* a new stride-1 convolution starts as the identity (centre tap = identity matrix); a new BN-ReLU
  vertex behind it has its batch norm set to undo itself (``gamma = sqrt(var + eps)``, ``beta = mean``,
  with running statistics estimated from the parent's batch norms), exact where its input is
  non-negative (after a ReLU); a new one-to-one vertex is the identity;
* a new BN-ReLU vertex ``w`` inserted between a convolution and the BN-ReLU vertex ``v`` it fed
  alone (INSERT-ONE-TO-ONE, INSERT-CONVOLUTION): ``w`` takes ``v``'s batch norm, and ``v``'s, which
  now reads a ReLU output, undoes itself;
* more output channels (Net2Wider): new channels copy random existing ones (weights, batch-norm
  parameters and statistics), every consumer divides the copied channels' incoming weights by their
  number of copies; optional small noise on the copied filters only breaks the symmetry;
* a larger filter: the old kernel zero-padded in the middle of the new one;
* a new convolution on a skip path: zero weights; a new gated identity skip (``Edge.gate``, what
  ADD-SKIP adds in populations with this inheritance): its gate at 0.

Everything else (fewer channels, stride changes, smaller filters, removals, a new ungated identity
skip, which the network has no gate to switch off) keeps the paper's inheritance (:func:`inherit_weights`:
same owner and shape -> copied, otherwise freshly initialised), and the report says so.

How exactness is decided: every channel of every activation of the child is written as a sum of
*parent atoms* (a batch-norm-ReLU output channel, a convolution's output channel or an image channel,
with the nearest-neighbour resizes applied to it).  A child tensor is built exactly when its inputs
are known sums of atoms that match the parent's; the child computes the parent's logits exactly when
the classifier's input matches the parent's.  No data are needed, and chains of several mutations are
handled the same way.
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping, Sequence

import torch

from evo.genome.real2017.dna import DNA, Edge, VertexType, edge_output_shape
from evo.network.real2017 import DNANet, inherit_weights

__all__ = ["DEFAULT_NOISE", "inherit_preserving", "preserve_function", "summary"]

#: default noise on copied filters, relative to each filter's standard deviation
DEFAULT_NOISE = 0.01

# A value is one channel of an activation as a sum of parent atoms: a sorted tuple of
# (atom, multiplicity); () is an exact zero and None an unknown value.  An atom is
# (kind, owner id, channel, resize history): kind "A" = a vertex's activation (a BN-ReLU
# output or an image channel), "E" = a convolution edge's output, "G" = a gated skip's output
# (its input channel times the trained gate, whose sign is not known).
Atom = tuple[str, int, int, tuple[tuple[int, int], ...]]
Value = tuple[tuple[Atom, int], ...] | None


def _atom(kind: str, owner: int, channel: int) -> Value:
    return (((kind, owner, channel, ()), 1),)


def _add(values: Sequence[Value]) -> Value:
    counts: dict[Atom, int] = {}
    for v in values:
        if v is None:
            return None
        for a, n in v:
            counts[a] = counts.get(a, 0) + n
    return tuple(sorted(counts.items()))


def _resized(v: Value, size: tuple[int, int]) -> Value:
    if v is None:
        return None
    return tuple(sorted(((k, o, c, h + (size,)), n) for (k, o, c, h), n in v))


def _reshape(vals: list[Value], src_hw: tuple[int, int], channels: int, hw: tuple[int, int]) -> list[Value]:
    """DNANet's reshape of a skip input: nearest resize, channel truncation or zero padding."""
    out = [vals[c] if c < len(vals) else () for c in range(channels)]
    if tuple(src_hw) != tuple(hw):
        out = [_resized(v, tuple(hw)) if c < len(vals) else () for c, v in enumerate(out)]  # type: ignore[arg-type]
    return out


def _in_edges(dna: DNA, vid: int) -> list[Edge]:
    ins = dna.in_edges(vid)
    return [e for e in ins if not e.skip] + sorted((e for e in ins if e.skip), key=lambda e: e.id)


def _bn_ids(dna: DNA) -> set[int]:
    return {v.id for v in dna.vertices if v.type is VertexType.BN_RELU and v.id != dna.input_vertex}


def _parent_values(dna: DNA) -> tuple[dict[int, list[Value]], dict[int, list[Value]]]:
    """(post-activation, pre-activation) values of every parent vertex, channel by channel."""
    shapes = dna.shapes()
    bns = _bn_ids(dna)
    post: dict[int, list[Value]] = {}
    pre: dict[int, list[Value]] = {}
    for vid in dna.topological_order():
        c, h, w = shapes[vid]
        if vid == dna.input_vertex:
            post[vid] = [_atom("A", vid, i) for i in range(c)]
            continue
        terms = []
        for e in _in_edges(dna, vid):
            oc, oh, ow = edge_output_shape(e, shapes[e.src])
            if e.is_conv:
                vals = [_atom("E", e.id, i) for i in range(oc)]
            elif e.gate:  # a trained gate scales its input by a scalar of either sign
                vals = [_atom("G", e.id, i) for i in range(oc)]
            else:
                vals = post[e.src]
            terms.append(_reshape(vals, (oh, ow), c, (h, w)))
        pre[vid] = [_add([t[i] for t in terms]) for i in range(c)]
        post[vid] = [_atom("A", vid, i) for i in range(c)] if vid in bns else pre[vid]
    return post, pre


def _groups(child_vals: list[Value], parent_vals: list[Value]) -> list[tuple[list[int], list[int]]] | None:
    """Pair parent input channels with the child channels that carry the same value.

    Returns [(parent channels, child channels)] per distinct non-zero parent value, or None when
    a parent channel has no child channel carrying it (the consumer cannot be made exact).
    """
    by_value: dict[Value, list[int]] = {}
    for i, v in enumerate(parent_vals):
        if v:  # a zero channel needs no weight
            by_value.setdefault(v, []).append(i)
    found: dict[Value, list[int]] = {v: [] for v in by_value}
    for j, v in enumerate(child_vals):
        if v is not None and v in found:
            found[v].append(j)
    if any(not js for js in found.values()):
        return None
    return [(by_value[v], found[v]) for v in by_value]


def _input_map(groups: list[tuple[list[int], list[int]]], n_parent: int, n_child: int) -> torch.Tensor:
    """M[i, j]: weight of parent input channel i given to child channel j (1 / number of copies)."""
    m = torch.zeros(n_parent, n_child)
    for parents, children in groups:
        for i in parents:
            for j in children:
                m[i, j] = 1.0 / len(children)
    return m


def _relu_stats(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and variance of relu(z) for z ~ N(mu, sigma^2) (a BN-ReLU output in training)."""
    sigma = abs(sigma)
    if sigma < 1e-12:
        m = max(mu, 0.0)
        return m, 0.0
    a = mu / sigma
    cdf = 0.5 * (1.0 + math.erf(a / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    mean = mu * cdf + sigma * pdf
    second = (mu * mu + sigma * sigma) * cdf + mu * sigma * pdf
    return mean, max(second - mean * mean, 0.0)


class _Builder:
    """One pass over the child graph in topological order, building tensors and values."""

    def __init__(self, parent_dna: DNA, parent_state: Mapping[str, torch.Tensor], child_dna: DNA,
                 noise: float, rng: random.Random) -> None:
        self.pd, self.cd = parent_dna, child_dna
        self.ps = {k: v.detach().to("cpu") for k, v in parent_state.items()}
        self.noise, self.rng = float(noise), rng
        self.gen = torch.Generator().manual_seed(rng.getrandbits(63))
        self.net = DNANet(child_dna)
        self.paper = inherit_weights(self.net, self.ps)
        self.state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.p_post, self.p_pre = _parent_values(parent_dna)
        self.p_shapes, self.c_shapes = parent_dna.shapes(), child_dna.shapes()
        self.p_bns = {v for v in _bn_ids(parent_dna) if f"bns.v{v}.weight" in self.ps}
        self.p_edges = {e.id: e for e in parent_dna.edges}
        self.p_vertices = {v.id for v in parent_dna.vertices}
        self.pre_index: dict[Value, list[tuple[int, int]]] = {}
        for vid in self.p_bns:
            for c, v in enumerate(self.p_pre[vid]):
                self.pre_index.setdefault(v, []).append((vid, c))
        self.post: dict[int, list[Value]] = {}
        self.exact_edges: set[int] = set()  # edges whose output is the parent's (or a planned identity)
        self.built: list[str] = []  # tensors built by this module rather than by the paper's rule

    # -- edges ---------------------------------------------------------------------------------
    def edge_values(self, e: Edge) -> list[Value]:
        src = self.post[e.src]
        if e.gate and e.id not in self.p_edges:  # a new gated identity skip: its gate starts closed
            name = f"gates.e{e.id}"
            self.state[name] = torch.zeros_like(self.state[name])
            self.built.append(name)
            self.exact_edges.add(e.id)
            return [()] * len(src)
        if e.gate:  # the parent's gated skip: its channels where the input carries the parent's
            index = {v: i for i, v in enumerate(self.p_post[self.p_edges[e.id].src])}
            out = [_atom("G", e.id, index[v]) if v is not None and v in index else None for v in src]
            if all(v is not None for v in out):
                self.exact_edges.add(e.id)
            return out
        if not e.is_conv:
            if all(v is not None for v in src):
                self.exact_edges.add(e.id)
            return list(src)
        cout = int(e.channels or len(src))
        parent = self.p_edges.get(e.id)
        if parent is None or not parent.is_conv:
            return self._new_conv(e, src, cout)
        return self._grown_conv(e, parent, src, cout)

    def _new_conv(self, e: Edge, src: list[Value], cout: int) -> list[Value]:
        name = f"convs.e{e.id}.weight"
        w = self.state[name]
        if e.skip:  # a new path into a sum: silent until trained
            self.state[name] = torch.zeros_like(w)
            self.built.append(name)
            self.exact_edges.add(e.id)
            return [()] * cout
        if int(e.stride or 1) != 1:
            return [None] * cout  # a stride changes the resolution: the paper's fresh convolution
        kh, kw = e.kernel or (1, 1)
        new = torch.zeros_like(w)
        n = min(cout, len(src))
        idx = torch.arange(n)
        new[idx, idx, kh // 2, kw // 2] = 1.0
        self.state[name] = new
        self.built.append(name)
        if all(v is not None for v in src[:n]):
            self.exact_edges.add(e.id)
        return [src[o] if o < n else () for o in range(cout)]

    def _grown_conv(self, e: Edge, parent: Edge, src: list[Value], cout: int) -> list[Value]:
        pc = int(parent.channels or 0)
        (kh, kw), (pkh, pkw) = e.kernel or (1, 1), parent.kernel or (1, 1)
        if int(e.stride or 1) != int(parent.stride or 1) or kh < pkh or kw < pkw or cout < pc:
            return [None] * cout  # not a growth: the paper's inheritance
        name = f"convs.e{e.id}.weight"
        pw = self.ps.get(name)
        groups = _groups(src, self.p_post[parent.src])
        if pw is None or groups is None or pw.shape[1] != len(self.p_post[parent.src]):
            return [None] * cout
        g_out = list(range(pc)) + [self.rng.randrange(pc) for _ in range(cout - pc)]
        m = _input_map(groups, pw.shape[1], len(src)).to(pw.dtype)
        core = torch.einsum("oikl,ij->ojkl", pw[g_out], m)
        new = torch.zeros(cout, len(src), kh, kw, dtype=pw.dtype)
        oh, ow = (kh - pkh) // 2, (kw - pkw) // 2
        new[:, :, oh:oh + pkh, ow:ow + pkw] = core
        if self.noise > 0 and cout > pc:
            copies = new[pc:]
            scale = copies.flatten(1).std(dim=1, keepdim=True).nan_to_num(0.0).view(-1, 1, 1, 1)
            new[pc:] = copies + self.noise * scale * torch.randn(copies.shape, generator=self.gen)
        self.state[name] = new.to(self.state[name].dtype)
        self.built.append(name)
        self.exact_edges.add(e.id)
        return [_atom("E", e.id, g) for g in g_out]

    # -- vertices ------------------------------------------------------------------------------
    def vertex(self, vid: int) -> None:
        c, h, w = self.c_shapes[vid]
        if vid == self.cd.input_vertex:
            self.post[vid] = [_atom("A", self.pd.input_vertex, i) if vid == self.pd.input_vertex else None
                              for i in range(c)]
            return
        terms = []
        for e in _in_edges(self.cd, vid):
            oc, oh, ow = edge_output_shape(e, self.c_shapes[e.src])
            terms.append(_reshape(self.edge_values(e), (oh, ow), c, (h, w)))
        pre = [_add([t[i] for t in terms]) for i in range(c)]
        if f"bns.v{vid}.weight" in self.state:
            self.post[vid] = self._batch_norm(vid, pre)
        else:
            self.post[vid] = pre

    def _batch_norm(self, vid: int, pre: list[Value]) -> list[Value]:
        key = f"bns.v{vid}"
        bn = self.net.bns[f"v{vid}"]
        fields = ("weight", "bias", "running_mean", "running_var")
        t = {f: self.state[f"{key}.{f}"].clone() for f in fields}
        post: list[Value] = []
        changed = False
        for j, v in enumerate(pre):
            match = self.pre_index.get(v, []) if v is not None else []
            own = [m for m in match if m[0] == vid]
            if not own and self._non_negative(v) and self._may_be_identity(vid, j, v):
                # relu(x) = x on a non-negative input: a batch norm that undoes itself
                mean, var = self._stats(v)
                t["running_mean"][j], t["running_var"][j] = mean, var
                t["weight"][j], t["bias"][j] = math.sqrt(var + bn.eps), mean
                post.append(v)
                changed = True
            elif match:  # the parent's pre-activation: its batch norm, channel for channel
                p, pc = (own or match)[0]
                for f in fields:
                    t[f][j] = self.ps[f"bns.v{p}.{f}"][pc]
                post.append(_atom("A", p, pc))
                changed = True
            else:
                post.append(None)
        if changed:
            for f in fields:
                self.state[f"{key}.{f}"] = t[f]
                self.built.append(f"{key}.{f}")
        return post

    def _may_be_identity(self, vid: int, channel: int, v: Value) -> bool:
        """A new BN-ReLU vertex, or a parent's whose input already carries its parent output (its
        batch norm moved to a BN-ReLU vertex inserted in front of it), may become the identity."""
        if vid not in self.p_vertices:
            return True
        parent = self.p_post.get(vid, [])
        return channel < len(parent) and v == parent[channel]

    def _non_negative(self, v: Value) -> bool:
        return v is not None and all(k == "A" and o in self.p_bns for (k, o, _, _), _ in v)

    def _stats(self, v: Value) -> tuple[float, float]:
        """Running statistics the new batch norm will see: sums of rectified Gaussians."""
        mean = var = 0.0
        for (_, owner, ch, _), n in v or ():
            gamma = float(self.ps[f"bns.v{owner}.weight"][ch])
            beta = float(self.ps[f"bns.v{owner}.bias"][ch])
            m, s2 = _relu_stats(beta, gamma)
            mean, var = mean + n * m, var + n * n * s2
        return mean, (var if var > 1e-6 else 1.0)

    # -- the classifier ------------------------------------------------------------------------
    def head(self) -> bool:
        vals = self.post[self.cd.output_vertex]
        pvals = self.p_post[self.pd.output_vertex]
        pw, pb = self.ps.get("head.weight"), self.ps.get("head.bias")
        groups = _groups(vals, pvals)
        if groups is None or pw is None or pb is None or pw.shape != (self.pd.num_classes, len(pvals)) \
                or self.cd.num_classes != self.pd.num_classes:
            return False
        m = _input_map(groups, len(pvals), len(vals)).to(pw.dtype)
        self.state["head.weight"] = (pw @ m).to(self.state["head.weight"].dtype)
        self.state["head.bias"] = pb.clone().to(self.state["head.bias"].dtype)
        self.built += ["head.weight", "head.bias"]
        return True

    def faithful(self, vid: int) -> bool:
        """A child vertex that the parent also has carries every parent channel, unchanged in place."""
        vals = self.post.get(vid)
        if vals is None or any(v is None for v in vals):
            return False
        if vid not in self.p_vertices:
            return True
        pvals = self.p_post[vid]
        return len(vals) >= len(pvals) and all(vals[i] == pvals[i] for i in range(len(pvals)))


def _changes(parent: DNA, child: DNA) -> list[dict[str, Any]]:
    """The differences between parent and child DNA, by owner id, as the report lists them."""
    out: list[dict[str, Any]] = []
    if child.learning_rate != parent.learning_rate:
        out.append({"kind": "learning-rate", "ids": []})
    pe = {e.id: e for e in parent.edges}
    ce = {e.id: e for e in child.edges}
    pv = {v.id: v for v in parent.vertices}
    cv = {v.id: v for v in child.vertices}
    new_vertices = [v for v in cv if v not in pv]
    claimed: set[int] = set()
    for w in new_vertices:
        touching = [e.id for e in child.edges if (e.src == w or e.dst == w) and e.id not in pe]
        kind = "new-convolution" if any(ce[i].is_conv for i in touching) else "new-one-to-one"
        out.append({"kind": kind, "ids": [w, *touching]})
        claimed.update(touching)
    for eid, e in ce.items():
        if eid in claimed:
            continue
        if eid not in pe:
            out.append({"kind": "new-skip" if e.skip else "new-edge", "ids": [eid]})
            continue
        p = pe[eid]
        if p.type != e.type:
            out.append({"kind": "new-edge", "ids": [eid]})
            continue
        if not e.is_conv:
            continue
        if e.channels != p.channels:
            out.append({"kind": "more-channels" if (e.channels or 0) > (p.channels or 0) else "fewer-channels",
                        "ids": [eid]})
        if e.kernel != p.kernel:
            grows = all(a >= b for a, b in zip(e.kernel or (), p.kernel or ()))
            out.append({"kind": "larger-filter" if grows else "smaller-filter", "ids": [eid]})
        if e.stride != p.stride:
            out.append({"kind": "stride", "ids": [eid]})
    gone = sorted([v for v in pv if v not in cv] + [e for e in pe if e not in ce])
    if gone:
        out.append({"kind": "removal", "ids": gone})
    for vid, v in cv.items():
        if vid in pv and pv[vid].type != v.type:
            out.append({"kind": "nonlinearity", "ids": [vid]})
    return out


_PRESERVABLE = {"learning-rate", "new-convolution", "new-one-to-one", "more-channels", "larger-filter",
                "new-skip"}


def _local_check(change: dict[str, Any], b: _Builder, child: DNA) -> bool:
    """Whether one change's own tensors were built exactly and its neighbours kept their values."""
    if change["kind"] not in _PRESERVABLE:
        return False
    if change["kind"] == "learning-rate":
        return True
    edges = {e.id: e for e in child.edges}
    vertices: set[int] = set()
    for i in change["ids"]:
        if i in edges:
            if i not in b.exact_edges:
                return False
            vertices.update((edges[i].src, edges[i].dst))
        else:
            vertices.add(i)
            vertices.update(e.dst for e in child.out_edges(i))
    return all(b.faithful(v) for v in vertices if v != child.input_vertex)


def _mutation_verdicts(records: Sequence[Mapping[str, Any]], changes: list[dict[str, Any]],
                       exact: bool) -> list[dict[str, Any]]:
    """One verdict per applied mutation record, matched to the changes by the ids it names."""
    verdicts = []
    for r in records:
        name = str(r.get("name"))
        detail = r.get("detail") or {}
        ids = {int(detail[k]) for k in ("edge", "vertex") if isinstance(detail.get(k), int)}
        mine = [c for c in changes if ids & set(c["ids"])]
        if detail.get("reset_weights"):
            ok = False
        elif len(records) == 1:
            ok = exact
        elif mine:
            ok = all(c["preserved"] for c in mine)
        else:
            ok = exact
        verdicts.append({"name": name, "preserved": ok})
    return verdicts


def preserve_function(parent_dna: DNA, parent_state: Mapping[str, torch.Tensor], child_dna: DNA, *,
                      noise: float = DEFAULT_NOISE, rng: random.Random | int | None = None,
                      records: Sequence[Mapping[str, Any]] | None = None,
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The child's state dict (weights and batch-norm buffers) that keeps the parent's function.

    ``child_dna`` was made from ``parent_dna`` by :func:`evo.mutate` (any number of mutations);
    ``parent_state`` is the parent network's ``state_dict``.  ``noise`` is the standard deviation,
    relative to each filter's, of the noise added to copied filters only (0 keeps copies exact);
    ``rng`` picks which channels are copied.  ``records`` (the mutation records) adds one verdict
    per mutation to the report.

    The report: ``exact`` (the child's eval-mode logits equal the parent's, up to float rounding
    and the copies' noise), ``changes`` (each difference between the DNAs with ``preserved``),
    ``built`` (tensors set by this function), ``copied``/``fresh``/``mismatched`` (the paper's
    inheritance underneath), ``noise`` and, with ``records``, ``mutations``.
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    if noise < 0 or not math.isfinite(noise):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    b = _Builder(parent_dna, parent_state, child_dna, noise, rng)
    for vid in child_dna.topological_order():
        b.vertex(vid)
    exact = b.head()
    changes = _changes(parent_dna, child_dna)
    for ch in changes:
        ch["preserved"] = exact if len(changes) == 1 else (_local_check(ch, b, child_dna) and
                                                          (exact or ch["kind"] != "learning-rate"))
    report: dict[str, Any] = {
        "exact": exact,
        "changes": changes,
        "built": sorted(set(b.built)),
        "copied": b.paper["copied"],
        "fresh": b.paper["fresh"],
        "mismatched": b.paper["mismatched"],
        "noise": float(noise),
    }
    if records is not None:
        report["mutations"] = _mutation_verdicts(records, changes, exact)
    return b.state, report


def inherit_preserving(child_net: torch.nn.Module, parent_state: Mapping[str, torch.Tensor], *,
                       parent: DNA, child: DNA, mutations: Sequence[Mapping[str, Any]] | None = None,
                       noise: float = DEFAULT_NOISE, rng: random.Random | int | None = None,
                       **_: Any) -> dict[str, Any]:
    """The seam's ``inherit`` under ``inheritance="function-preserving"``: load
    :func:`preserve_function`'s state into ``child_net``; return its :func:`summary`."""
    state, report = preserve_function(parent, parent_state, child, noise=noise, rng=rng,
                                      records=list(mutations or []))
    device = next((t.device for t in child_net.state_dict().values()), torch.device("cpu"))
    child_net.load_state_dict({k: v.to(device) for k, v in state.items()})
    return summary(report)


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The few JSON numbers and names a fitness record keeps of a :func:`preserve_function` report."""
    verdicts = report.get("mutations") or []
    return {
        "mode": "function-preserving",
        "exact": bool(report["exact"]),
        "copied": len(report["copied"]),
        "fresh": len(report["fresh"]),
        "mismatched": len(report["mismatched"]),
        "built": len(report["built"]),
        "preserved": [v["name"] for v in verdicts if v["preserved"]],
        "not_preserved": [v["name"] for v in verdicts if not v["preserved"]],
        "changes": [{"kind": c["kind"], "preserved": c["preserved"]} for c in report["changes"]],
    }
