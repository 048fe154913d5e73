"""The automorphism group of a coloured graph, derived by decomposition instead of enumeration.

``Decomposer.analyze`` turns a coloured graph into a tree of :class:`Part`\\ s:

1. A *complete* relation (every node of colour A joined to every node of colour B
   by the same edge colour: a dense layer, a bias, a normalization's statistics
   node) is kept by every colour-preserving permutation, so it constrains
   nothing: it is removed (and recorded in the certificate).
2. What is left falls apart into connected components: one per residual
   channel, attention head, convolution group, ... Isomorphic components can be
   exchanged, so the group is a product, over classes of ``k`` isomorphic
   components, of ``k!`` times the components' own group to the ``k``: a
   *product* part. A component of one node is a *leaf*.
3. A component that does not fall apart is *rigid* when its colours are all
   distinct; otherwise one node ``v`` of its smallest colour class is
   individualized and colours refined again. By orbit-stabilizer the order is
   ``|orbit(v)| * |stabilizer(v)|``; the orbit is the set of nodes ``w`` whose
   individualized graph has the same certificate: an *orbit* part.

Certificates are canonical (equal for isomorphic inputs, computed without
looking at node numbers) and every claimed isomorphism between components is
checked edge by edge, so group orders are exact. Canonical node orders give the
isomorphisms that :meth:`Part` sampling uses to draw group elements uniformly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from gmnfx.errors import GmnfxError
from gmnfx.symmetry.colours import combine, ranks
from gmnfx.symmetry.refine import refine

__all__ = ["Part", "Decomposer"]


@dataclass
class Part:
    """A coloured graph's symmetry structure; ``canon`` is its canonical node order (local indices)."""

    kind: str  # "product", "orbit" or "rigid"
    cert: int  # interned certificate: equal for isomorphic graphs
    order: int  # order of the automorphism group
    canon: torch.Tensor  # local node indices in canonical order
    classes: list = field(default_factory=list)  # product: [(size, [Part] or None)] in canonical order
    base: Optional["Part"] = None  # orbit: the part with the base node individualized
    images: list = field(default_factory=list)  # orbit: canonical orders (local) of each node's individualization

    def sample_positions(self, generator: Optional[torch.Generator]) -> torch.Tensor:
        """A uniform automorphism as positions: canonical node ``j`` goes to canonical node ``t[j]``."""
        n = self.canon.numel()
        if self.kind == "rigid":
            return torch.arange(n)
        if self.kind == "orbit":
            image = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            inverse = torch.empty(n, dtype=torch.long)
            inverse[self.canon] = torch.arange(n)
            return inverse[image[self.base.sample_positions(generator)]]
        t = torch.arange(n)
        offset = 0
        for size, members in self.classes:
            if members is None:  # `size` interchangeable leaves
                t[offset:offset + size] = offset + torch.randperm(size, generator=generator)
                offset += size
                continue
            width = members[0].canon.numel()
            shuffle = torch.randperm(len(members), generator=generator)
            for i, member in enumerate(members):
                start = offset + i * width
                t[start:start + width] = offset + int(shuffle[i]) * width + member.sample_positions(generator)
            offset += width * len(members)
        return t

    def orbit_ids(self) -> torch.Tensor:
        """Orbit of each canonical position, as dense ids."""
        n = self.canon.numel()
        if self.kind == "rigid":
            return torch.arange(n)
        if self.kind == "orbit":
            ids = self.base.orbit_ids().tolist()
            parent = list(range(max(ids) + 1 if ids else 0))

            def find(a):
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                return a

            inverse = torch.empty(n, dtype=torch.long)
            inverse[self.canon] = torch.arange(n)
            for image in self.images:
                for p, q in enumerate(inverse[image].tolist()):
                    ra, rb = find(ids[p]), find(ids[q])
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
            return ranks(torch.tensor([find(i) for i in ids], dtype=torch.long))
        pieces, next_id = [], 0
        for size, members in self.classes:
            if members is None:
                pieces.append(torch.full((size,), next_id))
                next_id += 1
                continue
            inner = members[0].orbit_ids()
            pieces += [inner + next_id] * len(members)
            next_id += int(inner.max()) + 1
        return torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.long)


class Decomposer:
    """Builds :class:`Part` trees; certificates are interned per decomposer, so compare within one."""

    def __init__(self, search_budget: int = 2_000_000):
        self._certs: dict[tuple, int] = {}
        self._budget = search_budget

    def intern(self, key: tuple) -> int:
        return self._certs.setdefault(key, len(self._certs))

    def analyze(self, label: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, ecol: torch.Tensor) -> Part:
        """The symmetry structure of the graph on nodes ``0..len(label)-1`` coloured by ``label``."""
        m = label.numel()
        src, dst, ecol, removed = self._drop_complete_relations(label, src, dst, ecol)
        if m == 0 or int(torch.bincount(label).max()) == 1:  # all colours distinct: only the identity
            return Part("rigid", self.intern(("R", removed, tuple(label.tolist()))), 1, torch.argsort(label))
        comp = _components(m, src, dst)
        num_comps = int(comp.max()) + 1 if m else 0
        if num_comps == 1 and m > 1:
            return self._individualize(label, src, dst, ecol, removed)
        return self._product(label, src, dst, ecol, removed, comp, num_comps)

    # ------------------------------------------------------------------ steps
    def _drop_complete_relations(self, label, src, dst, ecol):
        if src.numel() == 0:
            return src, dst, ecol, ()
        size = torch.bincount(label)
        rel = combine(label[src], label[dst], ecol)
        count = torch.bincount(rel)
        a = torch.empty_like(count)
        b, c = torch.empty_like(count), torch.empty_like(count)
        a[rel], b[rel], c[rel] = label[src], label[dst], ecol
        full = torch.where(a == b, size[a] * (size[a] - 1), size[a] * size[b])
        complete = count == full
        removed = tuple(sorted(zip(a[complete].tolist(), b[complete].tolist(), c[complete].tolist())))
        keep = ~complete[rel]
        return src[keep], dst[keep], ecol[keep], removed

    def _product(self, label, src, dst, ecol, removed, comp, num_comps) -> Part:
        comp_size = torch.bincount(comp, minlength=num_comps)
        node_order = torch.argsort(comp, stable=True)
        node_start = torch.cumsum(comp_size, 0) - comp_size
        local = torch.empty_like(comp)
        local[node_order] = torch.arange(comp.numel()) - node_start[comp[node_order]]
        edge_comp = comp[src]
        edge_order = torch.argsort(edge_comp, stable=True)
        edge_count = torch.bincount(edge_comp, minlength=num_comps)
        edge_start = (torch.cumsum(edge_count, 0) - edge_count).tolist()
        edge_count = edge_count.tolist()

        groups: dict[int, list] = {}  # certificate -> [(part, nodes in canonical order)]
        leaf = comp_size[comp] == 1
        leaf_nodes = leaf.nonzero().flatten()
        leaf_nodes = leaf_nodes[torch.argsort(label[leaf_nodes], stable=True)]
        leaf_labels, leaf_counts = torch.unique_consecutive(label[leaf_nodes], return_counts=True)
        for lab, nodes in zip(leaf_labels.tolist(), torch.split(leaf_nodes, leaf_counts.tolist())):
            groups[self.intern(("v", lab))] = [(None, nodes)]
        starts, sizes = node_start.tolist(), comp_size.tolist()
        for c in (comp_size > 1).nonzero().flatten().tolist():
            nodes = node_order[starts[c]:starts[c] + sizes[c]]
            edges = edge_order[edge_start[c]:edge_start[c] + edge_count[c]]
            sub = (label[nodes], local[src[edges]], local[dst[edges]], ecol[edges])
            part = self.analyze(*sub)
            groups.setdefault(part.cert, []).append((part, nodes[part.canon], sub))

        classes, canon, order, key = [], [], 1, []
        for cert in sorted(groups):
            entries = groups[cert]
            if entries[0][0] is None:
                nodes = entries[0][1]
                classes.append((nodes.numel(), None))
                canon.append(nodes)
                order *= math.factorial(nodes.numel())
                key.append((cert, nodes.numel()))
                continue
            _check_isomorphic(entries)
            classes.append((len(entries), [part for part, _, _ in entries]))
            canon += [nodes for _, nodes, _ in entries]
            order *= math.factorial(len(entries)) * entries[0][0].order ** len(entries)
            key.append((cert, len(entries)))
        cert = self.intern(("P", removed, tuple(key)))
        return Part("product", cert, order, torch.cat(canon), classes=classes)

    def _individualize(self, label, src, dst, ecol, removed) -> Part:
        m = label.numel()
        size = torch.bincount(label)
        candidates = (size >= 2).nonzero().flatten()
        target = candidates[torch.argmin(size[candidates])]  # smallest class, then smallest colour
        cell = (label == target).nonzero().flatten()
        self._budget -= m * cell.numel()
        if self._budget < 0:
            raise GmnfxError(
                f"symmetry search too large: a component of {m} nodes has no structure to decompose and "
                f"would need an exhaustive search (colour class of {cell.numel()} nodes); gmnfx.symmetry "
                f"supports graphs whose symmetries come from layers, channels, heads, groups and ties")
        parts = []
        for w in cell.tolist():
            marked = label * 2
            marked[w] += 1
            parts.append(self.analyze(refine(m, src, dst, ecol, marked), src, dst, ecol))
        best = min(part.cert for part in parts)
        orbit = [part for part in parts if part.cert == best]
        base = orbit[0]
        for part in orbit[1:]:
            mapping = torch.empty(m, dtype=torch.long)
            mapping[base.canon] = part.canon
            _check_automorphism(mapping, label, src, dst, ecol)
        cert = self.intern(("I", removed, best))
        return Part("orbit", cert, len(orbit) * base.order, base.canon, base=base,
                    images=[part.canon for part in orbit])


def _components(m: int, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Connected components (edges undirected) as dense ids ordered by their smallest node."""
    comp = torch.arange(m)
    if src.numel() == 0:
        return comp
    while True:
        new = comp.clone()
        new.scatter_reduce_(0, dst, comp[src], "amin")
        new.scatter_reduce_(0, src, comp[dst], "amin")
        new = new[new]  # pointer jumping: labels are node ids of the same component
        if torch.equal(new, comp):
            return ranks(comp)
        comp = new


def _edge_keys(nodes_a, nodes_b, ecol, width):
    return torch.sort((nodes_a * width + nodes_b) * (int(ecol.max()) + 1 if ecol.numel() else 1) + ecol).values


def _check_automorphism(mapping, label, src, dst, ecol) -> None:
    """Raise if ``mapping`` (a node permutation) changes a colour or an edge: an internal error."""
    m = label.numel()
    same = torch.equal(label[mapping], label) and torch.equal(
        _edge_keys(mapping[src], mapping[dst], ecol, m), _edge_keys(src, dst, ecol, m))
    if not same:
        raise GmnfxError("internal error in gmnfx.symmetry: equal certificates without an isomorphism; "
                         "please report this graph")


def _check_isomorphic(entries) -> None:
    """Check that canonical orders map the first component of a class onto every other one."""
    def canonical(part, sub):
        label, src, dst, ecol = sub
        position = torch.empty(label.numel(), dtype=torch.long)
        position[part.canon] = torch.arange(label.numel())
        return label[part.canon], _edge_keys(position[src], position[dst], ecol, label.numel())

    first_label, first_edges = canonical(entries[0][0], entries[0][2])
    for part, _, sub in entries[1:]:
        other_label, other_edges = canonical(part, sub)
        if not (torch.equal(first_label, other_label) and torch.equal(first_edges, other_edges)):
            raise GmnfxError("internal error in gmnfx.symmetry: isomorphic-looking components differ; "
                             "please report this graph")
