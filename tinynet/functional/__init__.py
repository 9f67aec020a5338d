"""The differentiable ops, one module per family. Each op is a ``Function`` (forward and
backward side by side, the gradient formula in its docstring) plus a lowercase wrapper with
PyTorch's name and arguments. ``tinynet.nn.functional`` and the top-level ``tinynet``
namespace re-export these."""
from .conversion import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
