"""Strategies for convolutional networks: all conv options, norms, pooling, residual CNNs."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from strategies._base import Architecture, PADDING_MODES, _activation, _finish, _name, _seed


# ---------------------------------------------------------------------- convolutions
class _FunctionalConv(nn.Module):
    """An nn.ConvNd's parameters applied with F.conv1d/2d/3d, so the functional lowering rule reads them."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.weight, self.bias, self.nd = conv.weight, conv.bias, conv.weight.dim() - 2
        self.options = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)

    def forward(self, x):
        return (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1](x, self.weight, self.bias, **self.options)


def _conv_layer(draw, nd: int, c_in: int, size: int, *, max_channels: int, padding_modes: tuple,
                functional: bool):
    """One drawn convolution on ``c_in`` channels of side ``size``: (module, c_out, output side, description).

    Groups are any divisor of ``c_in`` (``c_in``: depthwise); padding is an int, 'same' (stride 1) or 'valid';
    each side's padding stays within what the padding mode allows (reflect: < side, circular: <= side) and the
    kernel within the padded input, so the output is never empty.
    """
    groups = draw(st.sampled_from([g for g in range(1, c_in + 1) if c_in % g == 0]))
    c_out = groups * draw(st.integers(1, max(1, max_channels // groups)))
    mode = draw(st.sampled_from(padding_modes))
    limit = {"reflect": size - 1, "circular": size}.get(mode, 2)  # most padding per side the mode allows
    kind, dilation = draw(st.sampled_from(["int", "same", "valid"])), draw(st.integers(1, 2))
    max_kernel = 2 if nd == 3 else 3
    if kind == "same":  # PyTorch pads d*(k-1) in all, the larger half on the right
        padding, stride = "same", 1
        kernel = draw(st.integers(1, min(max_kernel, 2 * limit // dilation + 1)))
    else:
        padding = draw(st.integers(0, min(2, limit))) if kind == "int" else "valid"
        span = size + 2 * (padding if kind == "int" else 0)
        kernel = draw(st.integers(1, min(max_kernel, (span - 1) // dilation + 1)))
        stride = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](c_in, c_out, kernel, stride, padding, dilation, groups,
                                                     bias=bias, padding_mode=mode)
    as_function = functional and mode == "zeros" and draw(st.booleans())
    out_size = size if kind == "same" else (span - dilation * (kernel - 1) - 1) // stride + 1
    depthwise = " depthwise" if groups == c_in > 1 else ""
    desc = (f"{'F.conv' if as_function else 'Conv'}{nd}d({c_in},{c_out},k={kernel},s={stride},p={padding!r},"
            f"d={dilation},g={groups}{depthwise},bias={bias},mode={mode})")
    return (_FunctionalConv(conv) if as_function else conv), c_out, out_size, desc


@st.composite
def conv_architectures(draw, *, max_blocks: int = 2, max_channels: int = 4, dims: tuple = (1, 2, 3),
                       padding_modes: tuple = PADDING_MODES, functional: bool = True) -> Architecture:
    """Conv1d/2d/3d blocks (3-d at side 2..3) with activations, then flatten and a Linear head.

    Each conv draws groups (incl. depthwise), stride, dilation, int/'same'/'valid' padding, padding mode (from
    ``padding_modes``), bias, and (zeros padding, ``functional``) nn.ConvNd or F.convNd.
    """
    seed = _seed(draw)
    nd = draw(st.sampled_from(dims))
    size = in_size = draw(st.integers(2, 3) if nd == 3 else st.integers(3, 6))
    channels = c = draw(st.integers(1, max_channels))
    layers, desc = [], []
    for _ in range(draw(st.integers(1, max_blocks))):
        conv, c, size, text = _conv_layer(draw, nd, c, size, max_channels=max_channels,
                                          padding_modes=padding_modes, functional=functional)
        layers += [conv, _activation(draw)]
        desc.append(f"{text} {_name(layers[-1])}")
    layers += [nn.Flatten(), nn.Linear(c * size**nd, 2)]
    desc.append(f"flatten -> Linear({c * size**nd},2)")
    return _finish(draw, nn.Sequential(*layers), (channels,) + (in_size,) * nd, " -> ".join(desc), seed)


# ---------------------------------------------------------------------- norms and pooling
def _norm_for(draw, layout: str, nd: int, width: int, spatial: tuple):
    """A normalization for ``width`` features/channels: (module, description)."""
    eps = draw(st.sampled_from([1e-5, 1e-3]))
    if layout != "map":
        kind = draw(st.sampled_from(["layer", "batch"] if layout == "features" else ["layer"]))
    else:
        kind = draw(st.sampled_from(["batch", "group", "instance", "layer_map", "layer_last"]))
    affine = draw(st.booleans())
    if kind in ("layer", "layer_map", "layer_last"):
        shape = [width] if kind == "layer" else [width, *spatial] if kind == "layer_map" else [spatial[-1]]
        bias = affine and draw(st.booleans())
        return nn.LayerNorm(shape, eps, elementwise_affine=affine, bias=bias), \
            f"LayerNorm({shape},eps={eps},affine={affine},bias={bias})"
    if kind == "group":
        groups = draw(st.sampled_from([g for g in range(1, width + 1) if width % g == 0]))
        return nn.GroupNorm(groups, width, eps, affine=affine), f"GroupNorm({groups},{width},eps={eps},affine={affine})"
    cls = {"batch": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
           "instance": (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)}[kind][max(nd, 1) - 1]
    running = kind == "batch" or draw(st.booleans())  # BatchNorm in eval always reads its running statistics
    norm = cls(width, eps, affine=affine, track_running_stats=running)
    return norm, f"{cls.__name__}({width},eps={eps},affine={affine},running_stats={running})"


@st.composite
def norm_architectures(draw, *, max_width: int = 4, layouts: tuple = ("features", "tokens", "map"),
                       dims: tuple = (1, 2, 3)) -> Architecture:
    """A layer, a normalization, an activation, a Linear head.

    features [B, F]: Linear -> LayerNorm | BatchNorm1d; tokens [B, T, F]: Linear -> LayerNorm over the features;
    map [B, C, *S]: Conv -> BatchNorm | GroupNorm | InstanceNorm (affine or not, running statistics or not) |
    LayerNorm over [C, *S] or over the last spatial dim. Affine parameters and running statistics are random.
    """
    seed = _seed(draw)
    layout = draw(st.sampled_from(layouts))
    nd = draw(st.sampled_from(dims)) if layout == "map" else 0
    width, c_in = draw(st.integers(1, max_width)), draw(st.integers(1, max_width))
    # sides 2..4 (3-d: 1..2, the last 2), so every GroupNorm group holds more than one value
    spatial = tuple(draw(st.integers(1 if nd == 3 and d < 2 else 2, 2 if nd == 3 else 4)) for d in range(nd))
    tokens = draw(st.integers(1, 3)) if layout == "tokens" else 0
    first = nn.Linear(c_in, width) if layout != "map" else (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](c_in, width, 1)
    norm, norm_desc = _norm_for(draw, layout, nd, width, spatial)
    act = _activation(draw)
    flat = width * math.prod(spatial)
    head = [nn.Flatten(), nn.Linear(flat, 2)] if nd else [nn.Linear(width, 2)]
    model = nn.Sequential(first, norm, act, *head)
    shape = (c_in, *spatial) if nd else ((tokens, c_in) if tokens else (c_in,))
    desc = (f"{layout}: {_name(first)}({c_in},{width}{',k=1' if nd else ''}) -> {norm_desc} -> {_name(act)} -> "
            f"Linear({flat},2)")
    return _finish(draw, model, shape, desc, seed)


class _Call(nn.Module):
    """A parameter-free function with fixed keyword arguments (a functional pool or a reduction)."""

    def __init__(self, kind: str, fn=None, **kwargs):
        super().__init__()
        self.kind, self.fn, self.kwargs = kind, fn, kwargs

    def forward(self, x):
        if self.kind == "max_values":
            return x.max(self.kwargs["dim"], keepdim=self.kwargs["keepdim"]).values
        if self.kind in ("mean", "sum", "amax"):
            return getattr(x, self.kind)(dim=self.kwargs["dim"], keepdim=self.kwargs["keepdim"])
        return self.fn(x, **self.kwargs)


def _window_pool(draw, kind: str, nd: int, size: int):
    """Max/avg pool options with every window inside the padded input: (kwargs, output side)."""
    dilation = draw(st.integers(1, 2)) if kind == "max" else 1
    kernel = draw(st.integers(1, min(3, (size - 1) // dilation + 1)))
    stride = draw(st.sampled_from([None, 1, 2, 3]))
    padding = draw(st.integers(0, kernel // 2))  # PyTorch: at most half the (undilated) kernel
    ceil_mode = draw(st.booleans())
    options = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if kind == "max":
        options["dilation"] = dilation
    else:
        options["count_include_pad"] = draw(st.booleans())
        if nd > 1:  # AvgPool1d has no divisor_override
            options["divisor_override"] = draw(st.sampled_from([None, 1, 2, 5]))
    per_dim = {k: v for k, v in options.items() if k != "divisor_override"}
    probe = (F.max_pool1d if kind == "max" else F.avg_pool1d)(torch.zeros(1, 1, size), **per_dim)
    return options, probe.shape[-1]


@st.composite
def pooling_architectures(draw, *, max_channels: int = 3, dims: tuple = (1, 2), max_size: int = 5) -> Architecture:
    """Conv -> activation -> a pooling -> flatten -> Linear.

    Poolings: MaxPool (kernel, stride, padding, dilation, ceil_mode), AvgPool (kernel, stride, padding,
    ceil_mode, count_include_pad, divisor_override), each as a module or F.*_pool*d; AdaptiveAvg/MaxPool to a
    drawn output size; mean / sum / amax over a drawn set of spatial dims (keepdim or not); x.max(dim).values.
    """
    seed = _seed(draw)
    nd = draw(st.sampled_from(dims))
    c_in, channels = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    size = draw(st.integers(2, max_size))
    kind = draw(st.sampled_from(["max", "avg", "adaptive_avg", "adaptive_max", "mean", "sum", "amax", "max_values"]))
    if kind in ("max", "avg"):
        options, out = _window_pool(draw, kind, nd, size)
        out_shape = (out,) * nd
        functional = draw(st.booleans())
        fn = getattr(F, f"{kind}_pool{nd}d")
        module = getattr(nn, f"{kind.capitalize()}Pool{nd}d")
        pool = _Call(kind, fn, **options) if functional else module(**options)
        pool_desc = f"{'F.' + fn.__name__ if functional else module.__name__}({options})"
    elif kind.startswith("adaptive"):
        out_shape = tuple(draw(st.integers(1, size)) for _ in range(nd))
        module = getattr(nn, f"Adaptive{'Avg' if kind == 'adaptive_avg' else 'Max'}Pool{nd}d")
        pool, pool_desc = module(out_shape), f"{module.__name__}({out_shape})"
    else:
        reduce = draw(st.lists(st.integers(2, 1 + nd), min_size=1, max_size=1 if kind == "max_values" else nd,
                               unique=True))
        keepdim = draw(st.booleans())
        dim = reduce[0] if kind == "max_values" else tuple(reduce)
        call = "max" if kind == "max_values" else kind
        pool = _Call(kind, dim=dim, keepdim=keepdim)
        pool_desc = f"x.{call}(dim={dim},keepdim={keepdim})" + (".values" if kind == "max_values" else "")
        out_shape = tuple(1 if d + 2 in reduce else size for d in range(nd) if keepdim or d + 2 not in reduce)
    flat = channels * math.prod(out_shape)
    act = _activation(draw)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](c_in, channels, 3, padding=1)
    model = nn.Sequential(conv, act, pool, nn.Flatten(), nn.Linear(flat, 2))
    desc = f"Conv{nd}d({c_in},{channels},k=3,p=1) {_name(act)} -> {pool_desc} -> flatten -> Linear({flat},2)"
    return _finish(draw, model, (c_in,) + (size,) * nd, desc, seed)


# ---------------------------------------------------------------------- residual CNNs
class _Block(nn.Module):
    """conv -> optional norm -> activation, with an optional (projection) residual and layer scale."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: nn.Module, residual: str, layer_scale: bool,
                 shortcut: nn.Module):
        super().__init__()
        self.conv, self.norm, self.act, self.shortcut = conv, norm, act, shortcut
        self.residual = residual
        self.scale = nn.Parameter(torch.rand(conv.out_channels, 1, 1) + 0.5) if layer_scale else None

    def forward(self, x):
        h = self.act(self.norm(self.conv(x)))
        if self.scale is not None:
            h = h * self.scale
        if self.residual != "none":
            h = h + self.shortcut(x)
        return h


@st.composite
def residual_cnn_architectures(draw, *, max_blocks: int = 3, max_channels: int = 6) -> Architecture:
    """2-d CNNs of blocks with norms (BN/GN/IN/none), residuals, layer scale, then a pooling head."""
    seed = _seed(draw)
    channels = draw(st.integers(1, max_channels))
    size = draw(st.integers(4, 7))
    blocks, desc, c_in = [], [], channels
    for _ in range(draw(st.integers(1, max_blocks))):
        residual = draw(st.sampled_from(["none", "identity", "projection"]))
        c_out = c_in if residual == "identity" else draw(st.integers(1, max_channels))
        groups = draw(st.sampled_from(sorted({g for g in (1, c_in) if c_in % g == 0 and c_out % g == 0})))
        bias = draw(st.booleans())
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups, bias=bias)
        norm_kind = draw(st.sampled_from(["none", "batch", "group", "instance"]))
        norm = {"none": nn.Identity(), "batch": nn.BatchNorm2d(c_out),
                "group": nn.GroupNorm(draw(st.sampled_from([g for g in (1, 2, c_out) if c_out % g == 0])), c_out),
                "instance": nn.InstanceNorm2d(c_out, affine=draw(st.booleans()))}[norm_kind]
        act = _activation(draw)
        shortcut = nn.Conv2d(c_in, c_out, 1) if residual == "projection" else nn.Identity()
        layer_scale = draw(st.booleans())
        blocks.append(_Block(conv, norm, act, residual, layer_scale, shortcut))
        desc.append(f"Block({c_in}->{c_out}, g={groups}, bias={bias}, {norm!r}, {_name(act)}, "
                    f"residual={residual}, scale={layer_scale})")
        c_in = c_out
    pool = draw(st.sampled_from(["max", "avg", "adaptive", "mean"]))
    head = {"max": nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveMaxPool2d(1)),
            "avg": nn.Sequential(nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), nn.AdaptiveAvgPool2d(1)),
            "adaptive": nn.AdaptiveAvgPool2d(1), "mean": nn.AdaptiveAvgPool2d((1, 1))}[pool]
    model = nn.Sequential(*blocks, head, nn.Flatten(), nn.Linear(c_in, 2))
    return _finish(draw, model, (channels, size, size), " -> ".join(desc) + f" -> {pool} pool -> Linear({c_in},2)",
                   seed)
