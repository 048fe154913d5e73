"""Hypothesis strategies that draw small random architectures, bounded by construction.

Every strategy is an ``@st.composite`` with keyword-only bounds and small defaults. It draws a seed first and
seeds torch with it, so the weights and inputs follow from the drawn choices; the model is in eval mode, its
norms carry random affine parameters and running statistics, and the description names every drawn choice
(it is also the ``repr`` Hypothesis prints for a falsifying example). ``any_architecture()`` draws from all.
"""
from __future__ import annotations

from hypothesis import strategies as st

from strategies._base import ACTIVATIONS, Architecture, ENCODER_RTOL, PADDING_MODES
from strategies.dense import ELEMENTWISE_OPS, elementwise_architectures, mlp_architectures, sequence_architectures
from strategies.conv import conv_architectures, norm_architectures, pooling_architectures, residual_cnn_architectures
from strategies.sets_grids import deepsets_architectures, grid_sample_architectures
from strategies.attention import ATTENTION_FORMS, MIXED_FORMS, attention_architectures, mixed_architectures
from strategies.tied import TIED_FORMS, tied_architectures

__all__ = ["Architecture", "mlp_architectures", "conv_architectures", "residual_cnn_architectures",
           "sequence_architectures", "deepsets_architectures", "grid_sample_architectures",
           "attention_architectures", "norm_architectures", "pooling_architectures", "tied_architectures",
           "mixed_architectures", "elementwise_architectures", "any_architecture", "ACTIVATIONS", "PADDING_MODES",
           "ENCODER_RTOL", "ELEMENTWISE_OPS", "TIED_FORMS", "ATTENTION_FORMS", "MIXED_FORMS"]


# ---------------------------------------------------------------------- everything
def any_architecture(*, frontend: str = "auto") -> st.SearchStrategy:
    """Every strategy in this package with its defaults, simplest first (Hypothesis shrinks towards the first).

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
