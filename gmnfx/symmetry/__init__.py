"""Neural DAG automorphisms of compiled graphs: derive, count, sample and apply them.

The symmetry group of a ``ParameterGraph`` is the group of node permutations that
keep its structure: every node's type, op, activation and layer, every edge with
its type, layer, kernel offset and block attributes, the fixed weight of every
parameter-free edge, and weight tying, while fixing the network's own input and
output neurons. Parameter values (and BatchNorm running statistics) are what the
group moves, not what it must preserve. Every such permutation, applied to the
model's parameters, gives a model that computes the same function.

Public API::

    group_order(graph)             # exact order of the group (a Python int)
    sample(graph, generator=None)  # uniform element: LongTensor perm, node i -> perm[i]
    permute_model(model, graph, perm)  # deep copy with parameters moved by perm
    permute_graph(graph, perm)     # nodes relabelled by any permutation
"""
from gmnfx.symmetry.group import group_order, orbits, sample, symmetry_structure
from gmnfx.symmetry.permute import permute_model
from gmnfx.symmetry.relabel import permute_graph

__all__ = ["group_order", "sample", "permute_model", "permute_graph", "orbits", "symmetry_structure"]
