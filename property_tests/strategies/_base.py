"""Shared pieces of the architecture strategies: the Architecture record and drawing helpers."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from hypothesis import strategies as st

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
