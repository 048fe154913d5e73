"""Hypothesis strategies that draw small random architectures, bounded by construction.

Every strategy is an ``@st.composite`` with keyword-only bounds and small defaults. It draws a seed first and
seeds torch with it, so the weights and inputs follow from the drawn choices; the model is in eval mode, its
norms carry random affine parameters and running statistics, and the description names every drawn choice
(it is also the ``repr`` Hypothesis prints for a falsifying example). ``any_architecture()`` draws from all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

__all__ = ["Architecture", "mlp_architectures", "conv_architectures", "residual_cnn_architectures",
           "sequence_architectures", "deepsets_architectures", "grid_sample_architectures",
           "attention_architectures", "norm_architectures", "pooling_architectures", "tied_architectures",
           "mixed_architectures", "elementwise_architectures", "any_architecture", "ACTIVATIONS", "PADDING_MODES"]

ACTIVATIONS = (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.Sigmoid, nn.Identity, nn.LeakyReLU, nn.ReLU6)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ENCODER_RTOL = 1e-4  # eval-mode nn.TransformerEncoderLayer runs torch's fused fast path, which rounds differently


@dataclass
class Architecture:
    """A drawn model with an example input, a second input of another batch size, and what was drawn.

    ``rtol`` is the tolerance of ``simulate`` against ``forward`` (``check_compiles(..., rtol=arch.rtol)``).
    """

    model: nn.Module
    example: torch.Tensor
    second: torch.Tensor
    description: str
    rtol: float = 1e-5

    def __repr__(self) -> str:
        return self.description

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """What Hypothesis prints for a falsifying example (its printer lists a dataclass's fields otherwise)."""
        printer.text(self.description)


# ---------------------------------------------------------------------- shared drawing helpers
def _seed(draw) -> int:
    """Draw a seed and seed torch with it (before any module is built)."""
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    return seed


def _activation(draw) -> nn.Module:
    return draw(st.sampled_from(ACTIVATIONS))()


def _name(module: nn.Module) -> str:
    return type(module).__name__


@torch.no_grad()
def _randomize_norms(model: nn.Module) -> None:
    """Non-trivial norm parameters and running statistics, so mistakes (and false symmetries) show."""
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                m.weight.uniform_(0.5, 1.5)
            if getattr(m, "bias", None) is not None:
                m.bias.uniform_(-0.5, 0.5)
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)


def _finish(draw, model: nn.Module, shape: tuple, description: str, seed: int, *, vocab: int = 0,
            rtol: float = 1e-5) -> Architecture:
    """Randomize norms, switch to eval mode, draw the batch and make the two inputs (token ids if ``vocab``)."""
    _randomize_norms(model)
    batch = draw(st.integers(1, 3))
    make = (lambda b: torch.randint(0, vocab, (b, *shape))) if vocab else (lambda b: torch.randn(b, *shape))
    return Architecture(model.eval(), make(batch), make(batch + 1),
                        f"{description} (input {tuple(shape)}, batch {batch}, seed {seed})", rtol)


def _mlp_head(draw, width: int, *, max_hidden: int, max_width: int, out: int = 2):
    """A Linear head with 0..max_hidden hidden layers: (nn.Sequential, description)."""
    layers, desc = [], []
    for _ in range(draw(st.integers(0, max_hidden))):
        hidden, act = draw(st.integers(1, max_width)), _activation(draw)
        layers += [nn.Linear(width, hidden), act]
        desc.append(f"Linear({width},{hidden}) {_name(act)}")
        width = hidden
    layers.append(nn.Linear(width, out))
    desc.append(f"Linear({width},{out})")
    return nn.Sequential(*layers), " -> ".join(desc)


# ---------------------------------------------------------------------- MLPs
@st.composite
def mlp_architectures(draw, *, min_layers: int = 1, max_layers: int = 4, max_width: int = 8) -> Architecture:
    """Linear layers (bias on/off) with activations and optional LayerNorm/BatchNorm1d between them."""
    seed = _seed(draw)
    widths = draw(st.lists(st.integers(1, max_width), min_size=min_layers + 1, max_size=max_layers + 1))
    layers, desc = [], []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        bias = draw(st.booleans())
        layers.append(nn.Linear(a, b, bias=bias))
        desc.append(f"Linear({a},{b},bias={bias})")
        if i < len(widths) - 2:
            layers.append(_activation(draw))
            desc.append(_name(layers[-1]))
            if draw(st.booleans()):
                layers.append(draw(st.sampled_from([nn.LayerNorm, nn.BatchNorm1d]))(b))
                desc.append(_name(layers[-1]))
    return _finish(draw, nn.Sequential(*layers), (widths[0],), " -> ".join(desc), seed)


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


# ---------------------------------------------------------------------- token-wise layers and bookkeeping
_SHUFFLES = ("roll", "flip", "swap_halves", "transpose_twice", "reshape_round_trip", "gather", "stack_unbind")


class _Shuffle(nn.Module):
    """A pure bookkeeping op on [batch, tokens, features] that keeps the shape."""

    def __init__(self, kind: str, tokens: int, features: int, seed: int):
        super().__init__()
        self.kind = kind
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("order", torch.randperm(tokens, generator=generator))
        self.split = int(torch.randint(1, features, (1,), generator=generator)) if features > 1 else 1

    def forward(self, h):
        if self.kind == "roll":
            return torch.roll(h, shifts=1, dims=1)
        if self.kind == "flip":
            return h.flip(-1)
        if self.kind == "swap_halves":
            a, b = torch.split(h, [self.split, h.shape[-1] - self.split], dim=-1)
            return torch.cat([b, a], dim=-1)
        if self.kind == "transpose_twice":
            return h.transpose(1, 2).contiguous().transpose(1, 2)
        if self.kind == "reshape_round_trip":
            return h.reshape(h.shape[0], -1).view(h.shape[0], h.shape[1], h.shape[2])
        if self.kind == "gather":
            return h[:, self.order]
        parts = h.unbind(dim=1)
        return torch.stack(parts[::-1], dim=1)


@st.composite
def sequence_architectures(draw, *, max_layers: int = 3, max_tokens: int = 4,
                           max_features: int = 5) -> Architecture:
    """Token-wise dense layers on [batch, tokens, features] separated by random bookkeeping ops."""
    seed = _seed(draw)
    tokens, features = draw(st.integers(1, max_tokens)), draw(st.integers(1, max_features))
    layers, desc, width = [], [], features
    for _ in range(draw(st.integers(1, max_layers))):
        out = draw(st.integers(1, max_features))
        layers += [nn.Linear(width, out), _activation(draw)]
        kind, shuffle_seed = draw(st.sampled_from(_SHUFFLES)), draw(st.integers(0, 2**16))
        layers.append(_Shuffle(kind, tokens, out, shuffle_seed))
        desc.append(f"Linear({width},{out}) {_name(layers[-2])} -> {kind}(seed {shuffle_seed})")
        width = out
    layers += [nn.Flatten(), nn.Linear(tokens * width, 2)]
    desc.append(f"flatten -> Linear({tokens * width},2)")
    return _finish(draw, nn.Sequential(*layers), (tokens, features), " -> ".join(desc), seed)


# ---------------------------------------------------------------------- sets
def _set_pool(x: torch.Tensor, kind: str, keepdim: bool) -> torch.Tensor:
    """Pool ``x`` [batch, N, D] over the set axis."""
    if kind == "mean":
        return x.mean(dim=1, keepdim=keepdim)
    if kind == "sum":
        return x.sum(1, keepdim=keepdim)
    return x.max(1, keepdim=keepdim).values


class _SetLayer(nn.Module):
    """``Lambda(x) + Gamma(pool(x))`` (form "pooled") or ``Lambda(x - x.mean(1, keepdim=True))`` ("centered")."""

    def __init__(self, d_in: int, d_out: int, form: str, pool: str, bias: bool):
        super().__init__()
        self.form, self.pool = form, pool
        self.lam = nn.Linear(d_in, d_out, bias=bias)
        self.gam = nn.Linear(d_in, d_out, bias=False) if form == "pooled" else None

    def forward(self, x):
        if self.form == "centered":
            return self.lam(x - x.mean(dim=1, keepdim=True))
        return self.lam(x) + self.gam(_set_pool(x, self.pool, keepdim=True))


class _DeepSet(nn.Module):
    """Permutation-equivariant set layers with activations, an invariant pooling over the set, a head."""

    def __init__(self, layers: list, activations: list, readout: str, head: nn.Module):
        super().__init__()
        self.layers, self.activations = nn.ModuleList(layers), nn.ModuleList(activations)
        self.readout, self.head = readout, head

    def forward(self, x):
        for layer, activation in zip(self.layers, self.activations):
            x = activation(layer(x))
        return self.head(_set_pool(x, self.readout, keepdim=False))


def _deepset(draw, *, max_layers: int, max_features: int, features: int, max_hidden: int = 0):
    """Drawn set layers, a readout and a head (an MLP with up to ``max_hidden`` hidden layers)."""
    layers, activations, desc, width = [], [], [], features
    for _ in range(draw(st.integers(1, max_layers))):
        out, bias = draw(st.integers(1, max_features)), draw(st.booleans())
        form, pool = draw(st.sampled_from(["pooled", "centered"])), draw(st.sampled_from(["mean", "sum", "max"]))
        layers.append(_SetLayer(width, out, form, pool, bias))
        activations.append(_activation(draw))
        desc.append(f"SetLayer({width},{out},{form if form == 'centered' else pool},bias={bias}) "
                    f"{_name(activations[-1])}")
        width = out
    readout = draw(st.sampled_from(["mean", "sum", "max"]))
    head, head_desc = _mlp_head(draw, width, max_hidden=max_hidden, max_width=max_features)
    desc.append(f"{readout} over the set -> {head_desc}")
    return _DeepSet(layers, activations, readout, head), " -> ".join(desc)


@st.composite
def deepsets_architectures(draw, *, max_layers: int = 3, max_set_size: int = 5,
                           max_features: int = 5) -> Architecture:
    """DeepSets on sets [batch, N, D]: set layers (pooled by mean/sum/max, or centered), an invariant readout."""
    seed = _seed(draw)
    set_size, features = draw(st.integers(1, max_set_size)), draw(st.integers(1, max_features))
    model, desc = _deepset(draw, max_layers=max_layers, max_features=max_features, features=features)
    return _finish(draw, model, (set_size, features), desc, seed)


# ---------------------------------------------------------------------- grid_sample
class _GridModel(nn.Module):
    """Sample points from a Linear on the input (tanh, scaled past the border), a parameter grid sampled there."""

    def __init__(self, in_features: int, points: int, size: tuple, channels: int, options: dict):
        super().__init__()
        self.nd, self.points, self.options = len(size), points, options
        self.to_points = nn.Linear(in_features, points * self.nd)
        self.grid = nn.Parameter(torch.randn(1, channels, *size))
        self.keep = [-1] * (1 + self.nd)
        self.head = nn.Linear(channels * points, 2)

    def forward(self, x):
        p = 1.25 * torch.tanh(self.to_points(x))
        p = p.view(x.shape[0], self.points, *([1] * (self.nd - 1)), self.nd)
        features = F.grid_sample(self.grid.expand(x.shape[0], *self.keep), p, **self.options)
        return self.head(features.flatten(1))


@st.composite
def grid_sample_architectures(draw, *, max_points: int = 4, max_size: int = 4, max_channels: int = 3,
                              dims: tuple = (2, 3)) -> Architecture:
    """A spatial parameter grid read by F.grid_sample at points computed from the input, then a head."""
    seed = _seed(draw)
    nd = draw(st.sampled_from(dims))
    size = tuple(draw(st.integers(1, max_size)) for _ in range(nd))
    channels, points, in_features = draw(st.integers(1, max_channels)), draw(st.integers(1, max_points)), 3
    options = dict(mode=draw(st.sampled_from(["bilinear", "nearest"])),
                   padding_mode=draw(st.sampled_from(["zeros", "border"])), align_corners=draw(st.booleans()))
    model = _GridModel(in_features, points, size, channels, options)
    return _finish(draw, model, (in_features,), f"grid {size} x {channels} channels at {points} points, {options}",
                   seed)


# ---------------------------------------------------------------------- attention
class _DrawnAttention(nn.Module):
    """Self-attention written one of three ways, with an optional causal mask, then a readout layer."""

    def __init__(self, dim: int, heads: int, form: str, causal: bool):
        super().__init__()
        self.heads, self.form, self.causal = heads, form, causal
        self.out = nn.Linear(dim, dim)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True) if form == "mha" else None
        self.qkv = nn.Linear(dim, 3 * dim) if form != "mha" else None
        self.register_buffer("mask", torch.ones(8, 8).tril().bool())

    def forward(self, x):
        b, t, d = x.shape
        if self.mha is not None:
            mask = ~self.mask[:t, :t] if self.causal else None
            return self.out(self.mha(x, x, x, attn_mask=mask, need_weights=False)[0])
        qkv = self.qkv(x)
        q, k, v = (qkv[..., i * d:(i + 1) * d].view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for i in range(3))
        if self.form == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5
            if self.causal:
                scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = scores.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, d))


ATTENTION_FORMS = ("hand_written", "sdpa", "mha")


@st.composite
def attention_architectures(draw, *, max_heads: int = 3, max_head_dim: int = 3, max_tokens: int = 4,
                            forms: tuple = ATTENTION_FORMS) -> Architecture:
    """Self-attention: hand-written, F.scaled_dot_product_attention or nn.MultiheadAttention (fx only)."""
    seed = _seed(draw)
    heads, head_dim = draw(st.integers(1, max_heads)), draw(st.integers(1, max_head_dim))
    form, causal, tokens = draw(st.sampled_from(forms)), draw(st.booleans()), draw(st.integers(1, max_tokens))
    dim = heads * head_dim
    model = _DrawnAttention(dim, heads, form, causal)
    return _finish(draw, model, (tokens, dim), f"{form} attention, {heads} heads x {head_dim}, causal={causal}",
                   seed)


# ---------------------------------------------------------------------- elementwise ops, softmax, padding
ELEMENTWISE_OPS = ("sin", "gelu_tanh", "hardtanh", "clamp_relu", "clamp_relu6", "leaky_relu", "scale", "divide",
                   "neg", "sub", "product", "power", "param_add", "param_mul", "softmax", "log_softmax", "pad",
                   "functional_layer_norm", "merged_batch")


_UNARY = {"sin": torch.sin, "neg": torch.neg, "softmax": lambda t: t.softmax(dim=-1),
          "log_softmax": lambda t: F.log_softmax(t, dim=-1), "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
          "hardtanh": lambda t: F.hardtanh(t, 0.0, 6.0), "clamp_relu": lambda t: t.clamp(min=0),
          "clamp_relu6": lambda t: torch.clamp(t, 0, 6)}


class _Step(nn.Module):
    """``op(Linear(h))`` for one drawn op; "sub"/"product" combine it with a second Linear of ``h``,
    "merged_batch" applies the Linear to ``h.reshape(-1, D)`` and views the rows back into tokens."""

    def __init__(self, op: str, d_in: int, d: int, option):
        super().__init__()
        self.op, self.option, self.lin = op, option, nn.Linear(d_in, d)
        self.other = nn.Linear(d_in, d) if op in ("sub", "product") else None
        with_param = op in ("param_add", "param_mul", "functional_layer_norm")
        self.p = nn.Parameter(torch.rand(d) + 0.5) if with_param else None
        self.q = nn.Parameter(torch.randn(d)) if op == "functional_layer_norm" else None

    def forward(self, h):
        if self.op == "merged_batch":
            return torch.tanh(self.lin(h.reshape(-1, h.shape[-1]))).view(h.shape[0], h.shape[1], -1)
        a, op, c = self.lin(h), self.op, self.option
        if op in _UNARY:
            return _UNARY[op](a)
        if op == "leaky_relu":
            return F.leaky_relu(a, c)
        if op in ("scale", "divide", "power"):
            return a * c if op == "scale" else a / c if op == "divide" else a ** c
        if op in ("sub", "product"):
            return a - self.other(h) if op == "sub" else a * torch.tanh(self.other(h))
        if op in ("param_add", "param_mul"):
            return a + self.p if op == "param_add" else a * self.p
        if op == "pad":
            return F.pad(a, c[:2], value=c[2])
        return F.layer_norm(a, (a.shape[-1],), self.p, self.q, c)


def _step_option(draw, op: str):
    """The op's own drawn constant (slope, scalar, exponent, (left, right, value) padding, eps), or None."""
    return {"leaky_relu": lambda: draw(st.sampled_from([0.01, 0.2])),
            "scale": lambda: draw(st.sampled_from([0.5, -2.0, 3.0])),
            "divide": lambda: draw(st.sampled_from([0.5, -2.0, 3.0])),
            "power": lambda: draw(st.integers(2, 3)),
            "pad": lambda: (draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.sampled_from([0.0, 1.5]))),
            "functional_layer_norm": lambda: draw(st.sampled_from([1e-5, 1e-3]))}.get(op, lambda: None)()


@st.composite
def elementwise_architectures(draw, *, max_ops: int = 3, max_width: int = 4, max_tokens: int = 3,
                              ops: tuple = ELEMENTWISE_OPS) -> Architecture:
    """Linear layers each followed by one drawn op, on features [B, F] or tokens [B, T, F], then a Linear head.

    Ops: sin, GELU(tanh), hardtanh(0, 6), clamp(min=0), clamp(0, 6), leaky_relu(slope), x * c, x / c, -x,
    a - b and a * tanh(b) of two Linears, x ** n, x + param, x * param, softmax, log_softmax, F.pad on the
    features (constant value), F.layer_norm with parameters, and (tokens) a Linear on the merged batch
    ``x.reshape(-1, D)`` viewed back.
    """
    seed = _seed(draw)
    tokens = draw(st.integers(0, max_tokens))  # 0: features [B, F]
    width = features = draw(st.integers(1, max_width))
    steps, desc = [], []
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from([o for o in ops if tokens or o != "merged_batch"]))
        out, option = draw(st.integers(1, max_width)), _step_option(draw, op)
        steps.append(_Step(op, width, out, option))
        shown = {"sub": f"(minus Linear({width},{out}))", "product": f"(times tanh(Linear({width},{out})))",
                 "merged_batch": "(Linear on x.reshape(-1, D), tanh, viewed back)"}.get(op, "")
        desc.append(f"Linear({width},{out}) {op}{shown}" + ("" if option is None else f"({option})"))
        width = out + (option[0] + option[1] if op == "pad" else 0)
    model = nn.Sequential(*steps, nn.Linear(width, 2))
    shape = (tokens, features) if tokens else (features,)
    return _finish(draw, model, shape, " -> ".join(desc) + f" -> Linear({width},2)", seed)


# ---------------------------------------------------------------------- weight tying
class _ReusedLinear(nn.Module):
    """Linear(d_in, d) -> act -> a square Linear(d, d) applied ``times`` times (one module, or copies whose
    weight is the first's) with activations between -> Linear(d, 2)."""

    def __init__(self, d_in: int, d: int, times: int, tie: str, bias: bool, acts: list):
        super().__init__()
        self.inp, self.head, self.acts = nn.Linear(d_in, d), nn.Linear(d, 2), nn.ModuleList(acts)
        shared = nn.Linear(d, d, bias=bias)
        self.steps = nn.ModuleList([shared] * times if tie == "module" else
                                   [shared] + [nn.Linear(d, d, bias=bias) for _ in range(times - 1)])
        for step in self.steps[1:]:
            step.weight = shared.weight

    def forward(self, x):
        h = self.acts[0](self.inp(x))
        for step, act in zip(self.steps, self.acts[1:]):
            h = act(step(h))
        return self.head(h)


class _TokenLM(nn.Module):
    """Embedding(V, d) on token ids [+ a learned position table] [-> LayerNorm] [-> token-wise MLP, residual or
    not] -> a head whose weight is the embedding table (``head.weight = emb.weight``, or F.linear)."""

    def __init__(self, vocab: int, d: int, tokens: int, *, padding_idx, position: bool, norm: bool, hidden: int,
                 act: nn.Module, residual: bool, head_bias: bool, functional_head: bool):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=padding_idx)
        self.pos = nn.Parameter(torch.randn(1, tokens, d)) if position else None
        self.norm = nn.LayerNorm(d) if norm else None
        self.mlp = nn.Sequential(nn.Linear(d, hidden), act, nn.Linear(hidden, d)) if hidden else None
        self.residual, self.functional_head = residual, functional_head
        self.head = nn.Linear(d, vocab, bias=head_bias)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        if self.pos is not None:
            h = h + self.pos
        if self.norm is not None:
            h = self.norm(h)
        if self.mlp is not None:
            h = h + self.mlp(h) if self.residual else self.mlp(h)
        return F.linear(h, self.emb.weight, self.head.bias) if self.functional_head else self.head(h)


class _SharedBranches(nn.Module):
    """Two branches ``act(a(x))`` and ``act(b(x))`` meeting a shared part, then added, then a head.

    shared "linear" / "conv": one layer applied to both branches; "bias": one bias parameter added to both.
    """

    def __init__(self, kind: str, a: nn.Module, b: nn.Module, shared, acts: list, head: nn.Module):
        super().__init__()
        self.kind, self.a, self.b, self.acts, self.head = kind, a, b, nn.ModuleList(acts), head
        if kind == "bias":
            self.shared_bias = shared
        else:
            self.shared = shared

    def forward(self, x):
        if self.kind == "bias":
            y = self.acts[0](self.a(x) + self.shared_bias) + self.acts[1](self.b(x) + self.shared_bias)
        else:
            y = self.shared(self.acts[0](self.a(x))) + self.shared(self.acts[1](self.b(x)))
        return self.head(y)


class _TiedAutoencoder(nn.Module):
    """``h = act(enc(x))`` [-> a hidden Linear(d, d) and act], decoded with the encoder's weight transposed:
    ``F.linear(h, enc.weight.t(), b)``, ``h @ enc.weight (+ b)`` or ``torch.addmm(b, h, enc.weight)``."""

    def __init__(self, d_in: int, d: int, decode: str, bias: bool, acts: list, hidden: bool):
        super().__init__()
        self.enc, self.acts, self.decode = nn.Linear(d_in, d), nn.ModuleList(acts), decode
        self.hidden = nn.Linear(d, d) if hidden else None
        self.b = nn.Parameter(torch.randn(d_in)) if bias or decode == "addmm" else None

    def forward(self, x):
        h = self.acts[0](self.enc(x))
        if self.hidden is not None:
            h = self.acts[1](self.hidden(h))
        if self.decode == "F.linear":
            return F.linear(h, self.enc.weight.t(), self.b)
        if self.decode == "addmm":
            return torch.addmm(self.b, h, self.enc.weight)
        y = h @ self.enc.weight
        return y if self.b is None else y + self.b


def _tied_autoencoder(draw, max_width: int):
    d_in, d = draw(st.integers(1, max_width)), draw(st.integers(1, max_width))
    decode = draw(st.sampled_from(["F.linear", "matmul", "addmm"]))
    bias, hidden = draw(st.booleans()), draw(st.booleans())
    acts = [_activation(draw) for _ in range(2)]
    model = _TiedAutoencoder(d_in, d, decode, bias, acts, hidden)
    desc = (f"autoencoder: Linear({d_in},{d}) {_name(acts[0])}"
            + (f" -> Linear({d},{d}) {_name(acts[1])}" if hidden else "")
            + f" -> decoded by {decode} with the encoder weight transposed, decoder bias={model.b is not None}; "
            "tied: encoder weight = decoder weight^T")
    return model, (d_in,), desc, 0


def _reused_linear(draw, max_width: int):
    d_in, d, times = draw(st.integers(1, max_width)), draw(st.integers(1, max_width)), draw(st.integers(2, 3))
    tie, bias = draw(st.sampled_from(["module", "weight"])), draw(st.booleans())
    acts = [_activation(draw) for _ in range(times + 1)]
    what = "one Linear module" if tie == "module" else "Linear copies sharing .weight (own biases)"
    desc = (f"reused: Linear({d_in},{d}) {_name(acts[0])} -> {what} ({d},{d},bias={bias}) applied {times}x with "
            f"{[_name(a) for a in acts[1:]]} -> Linear({d},2); tied: the square layer's weight"
            + (" and bias" if bias and tie == "module" else ""))
    return _ReusedLinear(d_in, d, times, tie, bias, acts), (d_in,), desc, 0


def _token_lm(draw, max_width: int, max_vocab: int, max_tokens: int):
    vocab, d = draw(st.integers(2, max_vocab)), draw(st.integers(1, max_width))
    tokens = draw(st.integers(1, max_tokens))
    options = dict(padding_idx=draw(st.sampled_from([None, 0])), position=draw(st.booleans()),
                   norm=draw(st.booleans()), hidden=draw(st.integers(0, max_width)), act=_activation(draw),
                   residual=draw(st.booleans()), head_bias=draw(st.booleans()), functional_head=draw(st.booleans()))
    model = _TokenLM(vocab, d, tokens, **options)
    shown = {k: (_name(v) if k == "act" else v) for k, v in options.items()}
    desc = f"token LM: Embedding({vocab},{d}) on {tokens} ids, {shown}; tied: head.weight = emb.weight"
    return model, (tokens,), desc, vocab


def _shared_branches(draw, max_width: int):
    kind = draw(st.sampled_from(["linear", "conv", "bias"]))
    c_in, c, c_out = (draw(st.integers(1, max_width)) for _ in range(3))
    acts = [_activation(draw) for _ in range(2)]
    if kind == "conv":
        nd, size, k = draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.sampled_from([1, 3]))
        conv = (nn.Conv1d, nn.Conv2d)[nd - 1]  # every conv keeps the side, so the branches line up
        a, b, shared = conv(c_in, c, k, padding=k // 2), conv(c_in, c, 1), conv(c, c_out, 3, padding=1)
        head, shape = nn.Sequential(nn.Flatten(), nn.Linear(c_out * size**nd, 2)), (c_in,) + (size,) * nd
        parts = (f"Conv{nd}d({c_in},{c},k={k},p={k // 2}) | Conv{nd}d({c_in},{c},k=1); "
                 f"shared Conv{nd}d({c},{c_out},k=3,p=1)")
    else:
        a, b, shape = nn.Linear(c_in, c), nn.Linear(c_in, c, bias=False), (c_in,)
        if kind == "linear":
            shared, head = nn.Linear(c, c_out, bias=draw(st.booleans())), nn.Linear(c_out, 2)
            parts = f"Linear({c_in},{c}) | Linear({c_in},{c},bias=False); shared {shared}"
        else:
            shared, head = nn.Parameter(torch.randn(c)), nn.Linear(c, 2)
            parts = f"Linear({c_in},{c}) + b | Linear({c_in},{c},bias=False) + b; shared bias b[{c}]"
    model = _SharedBranches(kind, a, b, shared, acts, head)
    desc = f"shared branches: {parts}; activations {[_name(x) for x in acts]}; branches added -> head; tied: {kind}"
    return model, shape, desc, 0


TIED_FORMS = ("reused_linear", "autoencoder", "token_lm", "shared_branches")


@st.composite
def tied_architectures(draw, *, forms: tuple = TIED_FORMS, max_width: int = 4, max_vocab: int = 6,
                       max_tokens: int = 4) -> Architecture:
    """Weight tying drawn several ways (the description says what is tied):

    reused_linear: a square Linear applied 2-3 times (one module, or copies sharing ``.weight``);
    autoencoder: a decoder using the encoder's weight transposed (F.linear with ``.t()``, ``@``, addmm);
    token_lm: Embedding on token ids whose table is also the output head's weight (``head.weight = emb.weight``
    or ``F.linear(h, emb.weight)``), optional position table, LayerNorm, token-wise MLP; inputs are token ids;
    shared_branches: a Linear, a conv or a bias parameter shared by two branches that are then added.
    """
    seed = _seed(draw)
    form = draw(st.sampled_from(forms))
    if form == "reused_linear":
        model, shape, desc, vocab = _reused_linear(draw, max_width)
    elif form == "autoencoder":
        model, shape, desc, vocab = _tied_autoencoder(draw, max_width)
    elif form == "token_lm":
        model, shape, desc, vocab = _token_lm(draw, max_width, max_vocab, max_tokens)
    else:
        model, shape, desc, vocab = _shared_branches(draw, max_width)
    return _finish(draw, model, shape, desc, seed, vocab=vocab)


# ---------------------------------------------------------------------- mixtures
class _PreNormBlock(nn.Module):
    """[Linear(d, d) and a class token joined to the sequence ->] a hand-assembled pre-norm transformer block
    ``x + attn(ln1(x)); x + mlp(ln2(x))`` -> a readout."""

    def __init__(self, dim: int, heads: int, form: str, causal: bool, hidden: int, act: nn.Module, readout: str,
                 tokens: int, cls: bool):
        super().__init__()
        # ViT-style: the token joins projected tokens. Joined to the raw input it breaks gmnfx's input-channel
        # probe, which reads the token's values as input element indices (a known gmnfx bug)
        self.cls = nn.Parameter(torch.randn(1, 1, dim)) if cls else None
        self.proj = nn.Linear(dim, dim) if cls else None
        tokens += int(cls)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _DrawnAttention(dim, heads, form, causal)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), act, nn.Linear(hidden, dim))
        self.readout = readout
        self.head = nn.Linear(dim * tokens if readout == "flatten" else dim, 2)

    def forward(self, x):
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.proj(x)], dim=1)
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return self.head(_readout(x, self.readout))


def _readout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """[batch, tokens, dim] -> per sample: the first token, the token mean, all tokens flattened, or per token."""
    if kind == "first":
        return x[:, 0]
    if kind == "mean":
        return x.mean(dim=1)
    return x.flatten(1) if kind == "flatten" else x


class _Encoder(nn.Module):
    """nn.TransformerEncoderLayer (or an nn.TransformerEncoder stack of them), optionally causal, then a readout;
    with ``vocab``, on token ids through an Embedding plus positions: a learned table ``[1, T, D]`` added, or
    an Embedding(T, D) read at a ``position_ids`` buffer."""

    def __init__(self, encoder: nn.Module, causal: bool, tokens: int, readout: str, dim: int, vocab: int = 0,
                 positions: str = "table"):
        super().__init__()
        self.encoder, self.causal, self.readout = encoder, causal, readout
        self.emb = nn.Embedding(vocab, dim) if vocab else None
        self.pos = nn.Parameter(torch.randn(1, tokens, dim)) if vocab and positions == "table" else None
        self.pos_emb = nn.Embedding(tokens, dim) if vocab and positions == "embedding" else None
        self.register_buffer("position_ids", torch.arange(tokens)[None])
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(tokens) if causal else None)
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        if self.emb is not None:
            x = self.emb(x) + (self.pos if self.pos is not None else self.pos_emb(self.position_ids))
        if self.causal:
            x = self.encoder(x, self.mask, is_causal=True)
        else:
            x = self.encoder(x)
        return self.head(_readout(x, self.readout))


def _encoder(draw, dim: int, heads: int, tokens: int, max_width: int, max_layers: int, vocab: int = 0,
             positions: str = "table"):
    """A drawn tiny nn.TransformerEncoderLayer / nn.TransformerEncoder (dropout 0): (module, description)."""
    options = dict(dim_feedforward=draw(st.integers(1, max_width)),
                   activation=draw(st.sampled_from(["relu", "gelu"])), norm_first=draw(st.booleans()),
                   bias=draw(st.booleans()),
                   layer_norm_eps=draw(st.sampled_from([1e-5, 1e-3])))
    layer = nn.TransformerEncoderLayer(dim, heads, dropout=0.0, batch_first=True, **options)
    stack, final_norm = draw(st.integers(0, max_layers)), draw(st.booleans())  # 0: the bare layer
    encoder = nn.TransformerEncoder(layer, stack, norm=nn.LayerNorm(dim) if final_norm else None,
                                    enable_nested_tensor=False) if stack else layer
    causal, readout = draw(st.booleans()), draw(st.sampled_from(["first", "mean", "tokens"]))
    where = f"nn.TransformerEncoder({stack} layers, final norm={final_norm})" if stack else "one layer"
    desc = (f"TransformerEncoderLayer(d={dim},heads={heads},{options}) {where}, causal={causal}, "
            f"readout {readout} -> Linear({dim},2)")
    return _Encoder(encoder, causal, tokens, readout, dim, vocab, positions), desc


def _cnn_mlp(draw, max_width: int, dims: tuple, padding_modes: tuple):
    nd = draw(st.sampled_from(dims))
    size = in_size = draw(st.integers(2, 3) if nd == 3 else st.integers(3, 5))
    channels = c = draw(st.integers(1, max_width))
    layers, desc = [], []
    for _ in range(draw(st.integers(1, 2))):
        conv, c, size, text = _conv_layer(draw, nd, c, size, max_channels=max_width, padding_modes=padding_modes,
                                          functional=True)
        layers.append(conv)
        if draw(st.booleans()):
            layers.append((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[nd - 1](c))
            text += " BatchNorm"
        layers.append(_activation(draw))
        desc.append(f"{text} {_name(layers[-1])}")
    pool = draw(st.sampled_from(["flatten", "adaptive_avg", "adaptive_max"]))
    if pool != "flatten":
        layers.append(getattr(nn, f"Adaptive{'Avg' if pool == 'adaptive_avg' else 'Max'}Pool{nd}d")(1))
        size = 1
    head, head_desc = _mlp_head(draw, c * size**nd, max_hidden=2, max_width=max_width)
    model = nn.Sequential(*layers, nn.Flatten(), head)
    return model, (channels,) + (in_size,) * nd, " -> ".join(desc) + f" -> {pool} -> {head_desc}", 0


def _attention_shape(draw, max_heads: int, max_head_dim: int, max_tokens: int):
    heads, head_dim = draw(st.integers(1, max_heads)), draw(st.integers(1, max_head_dim))
    tokens = draw(st.integers(1, max_tokens))
    return heads, heads * head_dim, tokens


MIXED_FORMS = ("cnn_mlp", "prenorm_block", "encoder_layer", "deepsets_mlp", "token_encoder")


@st.composite
def mixed_architectures(draw, *, forms: tuple = MIXED_FORMS, attention_forms: tuple = ATTENTION_FORMS,
                        max_width: int = 4, max_heads: int = 2, max_head_dim: int = 2, max_tokens: int = 3,
                        dims: tuple = (1, 2), padding_modes: tuple = PADDING_MODES,
                        max_vocab: int = 5, max_encoder_layers: int = 1) -> Architecture:
    """Mixtures of families:

    cnn_mlp: a conv trunk (drawn convs, optional BatchNorm) -> flatten or adaptive pool -> an MLP head;
    prenorm_block: [a Linear, a class token joined ->] a hand-assembled pre-norm transformer block (attention of
    ``attention_forms``, token-wise MLP, residuals, LayerNorms) -> a readout;
    encoder_layer: a tiny nn.TransformerEncoderLayer (dropout 0, pre/post-norm, relu/gelu, bias or not,
    optionally causal), bare or in an nn.TransformerEncoder of up to ``max_encoder_layers`` (fx only);
    deepsets_mlp: DeepSets layers then an MLP head;
    token_encoder: token ids -> Embedding + a position table or position Embedding -> an encoder (fx only).
    """
    seed = _seed(draw)
    form = draw(st.sampled_from(forms))
    vocab, rtol = 0, 1e-5
    if form == "cnn_mlp":
        model, shape, desc, vocab = _cnn_mlp(draw, max_width, dims, padding_modes)
    elif form == "deepsets_mlp":
        set_size, features = draw(st.integers(1, 4)), draw(st.integers(1, max_width))
        model, desc = _deepset(draw, max_layers=2, max_features=max_width, features=features, max_hidden=2)
        shape = (set_size, features)
    elif form == "prenorm_block":
        heads, dim, tokens = _attention_shape(draw, max_heads, max_head_dim, max_tokens)
        attn, causal = draw(st.sampled_from(attention_forms)), draw(st.booleans())
        hidden = draw(st.integers(1, max_width))
        act, readout = _activation(draw), draw(st.sampled_from(["first", "mean", "flatten", "tokens"]))
        cls = draw(st.booleans())
        model = _PreNormBlock(dim, heads, attn, causal, hidden, act, readout, tokens, cls)
        desc = (f"pre-norm block: {f'Linear({dim},{dim}) + class token, ' if cls else ''}{attn} attention "
                f"({heads} heads, d={dim}, causal={causal}), MLP({dim},{hidden},{_name(act)}), readout {readout}")
        shape = (tokens, dim)
    else:
        heads, dim, tokens = _attention_shape(draw, max_heads, max_head_dim, max_tokens)
        vocab = draw(st.integers(2, max_vocab)) if form == "token_encoder" else 0
        positions = draw(st.sampled_from(["table", "embedding"])) if vocab else "table"
        model, desc = _encoder(draw, dim, heads, tokens, max_width, max_encoder_layers, vocab, positions)
        desc = (f"Embedding({vocab},{dim}) + {positions} positions -> " if vocab else "") + desc
        shape, rtol = (tokens,) if vocab else (tokens, dim), ENCODER_RTOL
    return _finish(draw, model, shape, f"{form}: {desc}", seed, vocab=vocab, rtol=rtol)


# ---------------------------------------------------------------------- everything
def any_architecture(*, frontend: str = "auto") -> st.SearchStrategy:
    """Every strategy above with its defaults, simplest first (Hypothesis shrinks towards the first).

    ``frontend="export"`` leaves out what only the torch.fx frontend lowers: module-level rules
    (nn.MultiheadAttention, nn.TransformerEncoderLayer) and conv padding modes other than zeros (torch.export
    turns them into F.pad with that mode, which has no lowering rule).
    """
    if frontend not in ("auto", "fx", "export"):
        raise ValueError(f"expected frontend 'auto', 'fx' or 'export' (got {frontend!r})")
    export = frontend == "export"
    modes = ("zeros",) if export else PADDING_MODES
    attention = tuple(f for f in ATTENTION_FORMS if not (export and f == "mha"))
    mixed = tuple(f for f in MIXED_FORMS if not (export and f in ("encoder_layer", "token_encoder")))
    return st.one_of(mlp_architectures(), elementwise_architectures(), conv_architectures(padding_modes=modes),
                     norm_architectures(), pooling_architectures(), residual_cnn_architectures(),
                     sequence_architectures(), deepsets_architectures(), grid_sample_architectures(),
                     attention_architectures(forms=attention), tied_architectures(),
                     mixed_architectures(forms=mixed, attention_forms=attention, padding_modes=modes))
