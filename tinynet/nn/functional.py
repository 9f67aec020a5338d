"""``tinynet.nn.functional``: PyTorch's functional namespace. The ops themselves live in
``tinynet/functional/``, one module per family; this module only gathers them under the name
PyTorch users expect (``import tinynet.nn.functional as F``)."""
from ..functional import *  # noqa: F401,F403
