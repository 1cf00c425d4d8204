"""Drop-in ``torch.nn`` dropout layers and functionals, bit-exact with torch 2.13 on CPU.

Importing this subpackage imports PyTorch (nothing else in :mod:`dropoutlib` does).
"""

from dropoutlib.torch.attention import multi_head_attention, scaled_dot_product_attention
from dropoutlib.torch.functional import (
    alpha_dropout,
    dropout,
    dropout1d,
    dropout2d,
    dropout3d,
    feature_alpha_dropout,
)
from dropoutlib.torch.gaussian import GaussianDropout as GaussianDropout
from dropoutlib.torch.lora import LoRALinear as LoRALinear
from dropoutlib.torch.mc import (
    FunctionalDropoutWarning,
    dropout_modules,
    enable_mc_dropout,
    functional_dropout_sites,
    mc_dropout,
    mc_forward,
)
from dropoutlib.torch.modules import (
    AlphaDropout,
    Dropout,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    FeatureAlphaDropout,
)
from dropoutlib.torch.recurrent import (
    ConcreteDropout,
    EmbeddingDropout,
    LockedDropout,
    VariationalGRU,
    concrete_dropout,
    concrete_regularization,
    embedding_dropout,
    locked_dropout,
    r_drop_loss,
    set_dropout_p,
    stacked_lstm,
    symmetric_kl,
)
from dropoutlib.torch.seeded import seeded_dropout as seeded_dropout
from dropoutlib.torch.structured import (
    DropBlock2d,
    DropPath,
    StochasticDepth,
    WeightDrop,
    drop_block2d,
    drop_path,
    stochastic_depth,
)

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "FunctionalDropoutWarning",
    "LockedDropout",
    "StochasticDepth",
    "VariationalGRU",
    "WeightDrop",
    "alpha_dropout",
    "concrete_dropout",
    "concrete_regularization",
    "drop_block2d",
    "drop_path",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "dropout_modules",
    "embedding_dropout",
    "enable_mc_dropout",
    "feature_alpha_dropout",
    "functional_dropout_sites",
    "locked_dropout",
    "mc_dropout",
    "mc_forward",
    "multi_head_attention",
    "r_drop_loss",
    "scaled_dot_product_attention",
    "set_dropout_p",
    "stacked_lstm",
    "stochastic_depth",
    "symmetric_kl",
]
