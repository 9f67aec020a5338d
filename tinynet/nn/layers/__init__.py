"""The layers of ``tinynet.nn``, one module per family. Each follows PyTorch's anatomy:
``__init__`` (store arguments, create Parameters) -> ``reset_parameters()`` (PyTorch's default
initialisation) -> ``forward()`` (one call into ``nn.functional``) -> ``extra_repr()``."""
from . import activation, conv, dropout, flatten, linear, loss, normalization, pooling, residual
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .flatten import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .residual import *  # noqa: F401,F403

__all__ = [name for family in (activation, conv, dropout, flatten, linear, loss, normalization, pooling, residual)
           for name in family.__all__]
