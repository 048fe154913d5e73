"""Node and edge vocabularies and the feature columns of compiled graphs.

The integer codes below are part of the on-disk format: append new members,
never renumber existing ones.
"""
from __future__ import annotations

from enum import IntEnum

__all__ = [
    "NodeType",
    "NodeOp",
    "Activation",
    "EdgeType",
    "NODE_FEATURES",
    "EDGE_FEATURES",
    "NodeCol",
    "EdgeCol",
]


class NodeType(IntEnum):
    """Role of a node in the network."""

    INPUT = 0  # one of the network's own input neurons (or input channels)
    HIDDEN = 1  # interchangeable hidden neuron (or channel)
    OUTPUT = 2  # one of the network's own output neurons (or output channels)
    BIAS = 3  # constant-one node feeding a layer's biases


class NodeOp(IntEnum):
    """What a node computes from its incoming edges (the simulator's node ops)."""

    INPUT = 0  # value given by the network input
    CONST = 1  # constant 1 (bias nodes)
    SUM = 2  # activation(sum_e weight_e * x_src)
    MAX = 3  # max over incoming x_src (max pooling)
    STATS = 4  # mean and variance of incoming x_src (a normalization group)
    NORMALIZE = 5  # (u - mean) / sqrt(var + eps) with mean/var from its STATS node
    BATCHNORM = 6  # (u - running_mean) / sqrt(running_var + eps), constants on the node
    PROD = 7  # product of incoming weight_e * x_src
    LOGSUMEXP = 8  # log(sum exp(x_src)) over its NORM_STATS_IN edges: the statistic of one softmax group
    SOFTMAX = 9  # exp(u - lse): u the NORM_INPUT sum, lse from its LOGSUMEXP node (NORM_STATS_OUT edge)
    GRID_SAMPLE = 10  # interpolates GRID edge values at the position given by its COORD edges


class Activation(IntEnum):
    """Elementwise nonlinearity applied by a SUM node."""

    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2  # slope in the activation_param column
    GELU = 3
    GELU_TANH = 4
    SILU = 5
    TANH = 6
    SIGMOID = 7
    RELU6 = 8
    SIN = 9


class EdgeType(IntEnum):
    """What an edge represents."""

    LINEAR = 0  # dense weight (nn.Linear, F.linear)
    CONV = 1  # convolution kernel tap
    BIAS = 2  # bias: from a layer's bias node
    SCALE = 3  # elementwise parameter (norm gamma, layer scale)
    SKIP = 4  # parameter-free, fixed weight (residual add, scalar multiply, subtraction)
    POOL = 5  # pooling / averaging window member
    NORM_INPUT = 6  # value being normalized -> normalized node
    NORM_STATS_IN = 7  # member of a normalization group -> its statistics node
    NORM_STATS_OUT = 8  # statistics node -> normalized node
    PRODUCT = 9  # factor of a product node
    TIED = 10  # a further use of a parameter already placed on another edge (weight sharing, tying)
    GRID = 11  # value of a spatial parameter grid at one cell -> the node sampling it
    COORD = 12  # a sampling coordinate -> the node sampling the grid there
    EMBEDDING = 13  # embedding table entry: one-hot vocabulary input (or token) -> feature


NODE_FEATURES = (
    "node_type",  # NodeType code
    "op",  # NodeOp code
    "activation",  # Activation code
    "activation_param",  # LeakyReLU negative slope, else 0
    "layer",  # index of the lowering step that created the node (0 = network input)
    "io_tensor",  # which input/output tensor, -1 for hidden and bias nodes
    "io_index",  # order within that input/output, -1 for hidden and bias nodes
    "norm_eps",  # epsilon of NORMALIZE/BATCHNORM nodes, else 0
    "norm_mean",  # BATCHNORM running mean, else 0
    "norm_var",  # BATCHNORM running variance, else 0
    "pos_0",  # spatial/sequence position of a computation-graph neuron; 0 in parameter graphs
    "pos_1",
    "pos_2",
)

EDGE_FEATURES = (
    "edge_type",  # EdgeType code
    "value",  # the weight the edge carries (parameter value or fixed weight)
    "layer",  # layer index of the destination's lowering step
    "pos_0",  # conv: kernel offset; linear on a flattened map: source position; elementwise: position
    "pos_1",
    "pos_2",
    "kernel_0",  # conv / pool kernel size per spatial dim, 0 if none
    "kernel_1",
    "kernel_2",
    "stride_0",
    "stride_1",
    "stride_2",
    "dilation_0",
    "dilation_1",
    "dilation_2",
    "padding_0",
    "padding_1",
    "padding_2",
    "groups",  # conv groups (1 otherwise); depthwise when groups == in_channels
    "padding_mode",  # conv padding mode: 0 zeros, 1 reflect, 2 replicate, 3 circular
    "operand",  # PRODUCT edges of a matrix product: 1 left factor, 2 right factor; 0 otherwise
)

NodeCol = IntEnum("NodeCol", {name.upper(): i for i, name in enumerate(NODE_FEATURES)})
EdgeCol = IntEnum("EdgeCol", {name.upper(): i for i, name in enumerate(EDGE_FEATURES)})
NodeCol.__doc__ = "Column index of each node feature."
EdgeCol.__doc__ = "Column index of each edge feature."
