"""``tinynet.nn``: Modules (layers and containers), Parameters, initialisers, and the
functional namespace, with PyTorch's names (``import tinynet.nn as nn``)."""
from . import functional, init, utils  # noqa: F401
from .parameter import Parameter
from .module import Module
from .containers import Sequential, ModuleList, ModuleDict
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "functional", "init", "utils",
           *_layers_all]
