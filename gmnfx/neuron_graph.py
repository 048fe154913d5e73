"""The lowered IR: neurons grouped into channels, plus blocks of edges.

Lowering rules create neurons with :meth:`NeuronGraph.new_neurons` and add
:mod:`gmnfx.edge_blocks` describing how those neurons are wired. Every neuron
belongs to one *channel*: the parameter-graph node it collapses into (a conv
channel, a linear unit, a bias node). Ids are handed out in creation order and
every edge runs from an older neuron to a newer one, so ``src < dst`` is a
certificate that both graphs are DAGs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from gmnfx.schema import Activation, NodeOp, NodeType

__all__ = ["NeuronGraph", "LayerInfo", "ColumnTable"]

_LONG = torch.long
_FLOAT = torch.float64


class ColumnTable:
    """Growable struct-of-arrays: named 1-D columns that rows are appended to in chunks."""

    def __init__(self, columns: dict[str, torch.dtype]):
        self._dtypes = dict(columns)
        self._data = {name: torch.empty(0, dtype=dt) for name, dt in columns.items()}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, n: int, **values) -> int:
        """Append ``n`` rows (scalars broadcast, tensors of length ``n``); return the first row id."""
        start = self._size
        self._reserve(start + n)
        for name, column in self._data.items():
            column[start : start + n] = values.get(name, 0)
        self._size += n
        return start

    def _reserve(self, size: int) -> None:
        capacity = next(iter(self._data.values())).numel()
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, 1024)
        for name, old in self._data.items():
            new = torch.zeros(capacity, dtype=old.dtype)
            new[: self._size] = old[: self._size]
            self._data[name] = new

    def column(self, name: str) -> torch.Tensor:
        """A view of the filled part of a column (writes go through)."""
        return self._data[name][: self._size]

    def permute_rows(self, order: torch.Tensor) -> None:
        """Reorder the filled rows of every column: new row ``i`` is old row ``order[i]``."""
        for name, column in self._data.items():
            column[: self._size] = column[: self._size][order]


@dataclass
class LayerInfo:
    """One lowering step that created neurons: what it was and where it came from."""

    name: str  # fx node name
    kind: str  # lowering rule name, e.g. "linear", "conv", "relu"
    module_path: str  # qualified module name ("" for the root module)
    source: str = ""  # the user's source line, if known


@dataclass
class NeuronGraph:
    """Neurons, channels and edge blocks produced by neuron-level lowering."""

    neurons: ColumnTable = field(
        default_factory=lambda: ColumnTable(
            {"channel": _LONG, "pos_0": _LONG, "pos_1": _LONG, "pos_2": _LONG,
             "io_tensor": _LONG, "io_index": _LONG}
        )
    )
    channels: ColumnTable = field(
        default_factory=lambda: ColumnTable(
            {"node_type": _LONG, "op": _LONG, "activation": _LONG, "activation_param": _FLOAT,
             "layer": _LONG, "io_tensor": _LONG, "io_index": _LONG, "norm_eps": _FLOAT,
             "norm_mean": _FLOAT, "norm_var": _FLOAT, "size": _LONG,
             "rank": _FLOAT,  # order of the channel in the parameter graph (default: creation index)
             "pos_0": _LONG, "pos_1": _LONG, "pos_2": _LONG}  # parameter-graph node position (grid cells), else 0
        )
    )
    blocks: list = field(default_factory=list)
    layers: list[LayerInfo] = field(default_factory=list)
    input_encodings: dict[int, int] = field(default_factory=dict)  # input index -> one-hot width (token inputs)

    @property
    def num_neurons(self) -> int:
        return len(self.neurons)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    # ------------------------------------------------------------------ creation
    def add_layer(self, info: LayerInfo) -> int:
        """Register a lowering step; returns its layer index (0 is the network input)."""
        self.layers.append(info)
        return len(self.layers) - 1

    def new_neurons(
        self,
        shape: Sequence[int],
        *,
        layer: int,
        op: NodeOp = NodeOp.SUM,
        channel_dim: Optional[int] = None,
        channel_key: Optional[torch.Tensor] = None,
        pos: Optional[torch.Tensor] = None,
        node_type: NodeType = NodeType.HIDDEN,
        activation: Activation = Activation.IDENTITY,
        activation_param: float = 0.0,
        norm_eps: float = 0.0,
        norm_mean: Optional[torch.Tensor] = None,
        norm_var: Optional[torch.Tensor] = None,
        channel: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Create ``prod(shape)`` neurons and their channels; return their id tensor.

        Channels are given by ``channel_dim`` (neurons sharing an index along
        that dim share a channel) or by ``channel_key`` (neurons with equal
        keys share a channel, channels numbered in increasing key order); with
        neither, all the neurons form one channel. ``channel`` (ids of existing
        channels, broadcastable to ``shape``) instead puts the neurons into
        those channels, which keep their attributes (the node keywords are
        ignored). ``pos`` ([*shape, 3]) are the positions recorded on
        computation-graph neurons; by default the index along the (up to
        three) non-channel dims.
        """
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        if channel is not None:
            return self._new_neurons_in(shape, channel, pos, channel_dim)
        if channel_key is not None:
            local, num_ch = _dense_key(channel_key.expand(shape))
        elif channel_dim is not None:
            channel_dim = channel_dim % len(shape)
            num_ch = shape[channel_dim]
            view = [1] * len(shape)
            view[channel_dim] = num_ch
            local = torch.arange(num_ch).view(view).expand(shape).reshape(-1)
        else:
            num_ch = 1
            local = torch.zeros(n, dtype=_LONG)
        if pos is None:
            pos = _default_positions(shape, channel_dim)
        pos = pos.reshape(n, 3)
        ch_start = self.channels.append(
            num_ch,
            node_type=int(node_type),
            op=int(op),
            activation=int(activation),
            activation_param=float(activation_param),
            layer=layer,
            io_tensor=-1,
            io_index=-1,
            norm_eps=float(norm_eps),
            norm_mean=0.0 if norm_mean is None else norm_mean.to(_FLOAT),
            norm_var=0.0 if norm_var is None else norm_var.to(_FLOAT),
            size=torch.bincount(local, minlength=num_ch) if n else 0,
            rank=torch.arange(len(self.channels), len(self.channels) + num_ch, dtype=_FLOAT),
        )
        start = self.neurons.append(
            n, channel=local + ch_start, pos_0=pos[:, 0], pos_1=pos[:, 1], pos_2=pos[:, 2],
            io_tensor=-1, io_index=-1,
        )
        return torch.arange(start, start + n, dtype=_LONG).view(shape)

    def _new_neurons_in(self, shape: tuple[int, ...], channel: torch.Tensor, pos: Optional[torch.Tensor],
                        channel_dim: Optional[int]) -> torch.Tensor:
        """Neurons of ``shape`` joining the existing channels ``channel`` (their ``size`` grows)."""
        n = math.prod(shape)
        channel = torch.as_tensor(channel, dtype=_LONG).expand(shape)
        if pos is None and channel_dim is None:  # positions: the dims the channel ids do not vary along
            pos = _positions_off_channel(channel)
        channel = channel.reshape(-1)
        if n and (int(channel.min()) < 0 or int(channel.max()) >= self.num_channels):
            raise ValueError(f"new_neurons: channel ids must be existing channels [0, {self.num_channels})")
        if pos is None:
            pos = _default_positions(shape, channel_dim % len(shape))
        pos = pos.reshape(n, 3)
        self.channels.column("size").index_add_(0, channel, torch.ones(n, dtype=_LONG))
        start = self.neurons.append(n, channel=channel, pos_0=pos[:, 0], pos_1=pos[:, 1], pos_2=pos[:, 2],
                                    io_tensor=-1, io_index=-1)
        return torch.arange(start, start + n, dtype=_LONG).view(shape)

    def new_bias_node(self, layer: int) -> torch.Tensor:
        """One constant-one node (a layer's bias node); returns its id as a 0-d tensor."""
        return self.new_neurons((), layer=layer, op=NodeOp.CONST, node_type=NodeType.BIAS)

    def add_block(self, block) -> None:
        self.blocks.append(block)

    # ------------------------------------------------------------------ queries
    def channel_of(self, ids: torch.Tensor) -> torch.Tensor:
        return self.neurons.column("channel")[ids]

    def all_positions(self) -> torch.Tensor:
        """Positions ``[num_neurons, 3]`` of every neuron."""
        return torch.stack([self.neurons.column(f"pos_{d}") for d in range(3)], dim=1)

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Positions ``[*ids.shape, 3]`` of the given neurons."""
        cols = [self.neurons.column(f"pos_{d}")[ids] for d in range(3)]
        return torch.stack(cols, dim=-1)

    def whole_channels(self, ids: torch.Tensor) -> Optional[torch.Tensor]:
        """The channels of ``ids`` if ``ids`` is exactly all their neurons, each once; else None."""
        flat = ids.reshape(-1)
        if flat.numel() == 0 or torch.unique(flat).numel() != flat.numel():
            return None
        channels = torch.unique(self.channel_of(flat))
        if int(self.channels.column("size")[channels].sum()) != flat.numel():
            return None
        return channels

    def set_channel_attr(self, channels: torch.Tensor, name: str, value) -> None:
        self.channels.column(name)[channels] = value

    def renumber_channels_by_rank(self) -> bool:
        """Renumber channels in (rank, id) order, remapping the neurons' channel ids.

        A constant feeding older channels (a class token joining a sequence's
        feature channels) gets a rank below theirs; renumbering restores
        ``src < dst`` on channel-level edges. Returns whether anything moved.
        """
        rank = self.channels.column("rank")
        order = torch.sort(rank, stable=True).indices
        if torch.equal(order, torch.arange(order.numel())):
            return False
        new_id = torch.empty_like(order)
        new_id[order] = torch.arange(order.numel())
        self.channels.permute_rows(order)
        self.channels.column("rank")[:] = torch.arange(order.numel(), dtype=_FLOAT)
        channel = self.neurons.column("channel")
        channel[:] = new_id[channel]
        return True

    def mark_io(self, ids: torch.Tensor, io_tensor: int, node_type: NodeType) -> None:
        """Mark ``ids`` (in their tensor's element order) as input/output ``io_tensor``.

        Neurons get their flat index as ``io_index``; channels get the rank of
        their first appearance, so a [C, H, W] output numbers its channels 0..C-1.
        """
        flat = ids.reshape(-1)
        order = torch.arange(flat.numel(), dtype=_LONG)
        neurons_io = self.neurons.column("io_index")
        untouched = neurons_io[flat] < 0
        self.neurons.column("io_tensor")[flat[untouched]] = io_tensor
        neurons_io[flat[untouched]] = order[untouched]
        channels = self.channel_of(flat)
        uniq, inverse = torch.unique(channels, return_inverse=True)
        first = torch.full((uniq.numel(),), flat.numel(), dtype=_LONG).scatter_reduce_(
            0, inverse, order, reduce="amin"
        )
        rank = torch.empty_like(first)
        rank[torch.argsort(first)] = torch.arange(first.numel())
        free = self.channels.column("io_index")[uniq] < 0
        keep = uniq[free]
        self.channels.column("io_tensor")[keep] = io_tensor
        self.channels.column("io_index")[keep] = rank[free]
        if node_type == NodeType.OUTPUT:
            types = self.channels.column("node_type")
            hidden = keep[types[keep] == NodeType.HIDDEN]
            types[hidden] = int(NodeType.OUTPUT)


def _dense_key(key: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Flat dense ids (increasing key order) of ``key``; its broadcast (stride-0) dims are not sorted again."""
    small = key
    for d in range(key.dim()):
        if key.shape[d] > 1 and key.stride(d) == 0:
            small = small.narrow(d, 0, 1)
    uniq, local = torch.unique(small.reshape(-1), return_inverse=True)
    return local.view(small.shape).expand(key.shape).reshape(-1), uniq.numel()


def _positions_off_channel(channel: torch.Tensor) -> torch.Tensor:
    """Positions of neurons with per-element ``channel`` ids: their index along the dims the ids are constant on."""
    shape = tuple(channel.shape)
    pos = torch.zeros(*shape, 3, dtype=_LONG)
    dims = [d for d in range(len(shape))
            if shape[d] > 1 and bool((channel == channel.narrow(d, 0, 1)).all())][-3:]
    for column, dim in zip(range(3 - len(dims), 3), dims):
        view = [1] * len(shape)
        view[dim] = shape[dim]
        pos[..., column] = torch.arange(shape[dim]).view(view)
    return pos


def _default_positions(shape: tuple[int, ...], channel_dim: Optional[int]) -> torch.Tensor:
    """Index of each element along its non-channel dims, right-aligned into 3 columns."""
    n = math.prod(shape)
    pos = torch.zeros(n, 3, dtype=_LONG)
    dims = [d for d in range(len(shape)) if d != channel_dim][-3:]
    if n == 0 or not dims:
        return pos
    grids = torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij")
    for column, dim in zip(range(3 - len(dims), 3), dims):
        pos[:, column] = grids[dim].reshape(-1)
    return pos
