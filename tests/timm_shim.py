"""timm's ``RMSpropTF`` where ``import timm`` fails for want of torchvision (this machine).

timm's package ``__init__`` and ``timm.optim``'s import torchvision (through ``timm.models`` and
``timm.utils``), and the registry's only torchvision wheel here is a CUDA build whose import
fails; ``timm/optim/rmsprop_tf.py`` itself needs only torch. ``install()`` makes ``timm`` and
``timm.optim`` empty package modules with their real ``__path__``, imports
``timm.optim.rmsprop_tf`` from them and binds ``RMSpropTF`` on ``timm.optim`` as timm's own
``__init__`` does: the optimizer is timm's, untouched. A machine with a working torchvision needs
none of it.

Processes that ``rmsprop-conformance certify`` starts get the same through
``tests/timm_stub`` on ``PYTHONPATH`` (a ``timm`` package whose ``__init__`` calls ``install``):
``PYTHONPATH=$PWD/tests/timm_stub:$PWD rmsprop-conformance certify examples/timm-rmsproptf.toml``.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path


def real_timm_dir() -> Path:
    """The installed timm package directory (the first on ``sys.path`` holding rmsprop_tf)."""
    for entry in sys.path:
        candidate = Path(entry or ".") / "timm"
        if (candidate / "optim" / "rmsprop_tf.py").is_file():
            return candidate.resolve()
    raise ModuleNotFoundError("timm is not installed (pip install --no-deps timm)")


def install(timm: types.ModuleType | None = None) -> type:
    """``timm.optim.RMSpropTF``, importing timm's ``rmsprop_tf`` module without its packages'
    ``__init__`` (``timm``: an existing module to use as the package, e.g. a stub's own)."""
    loaded = sys.modules.get("timm.optim.rmsprop_tf")
    if loaded is not None:
        return loaded.RMSpropTF
    root = real_timm_dir()
    package = timm if timm is not None else types.ModuleType("timm")
    package.__path__ = [str(root)]
    optim = types.ModuleType("timm.optim")
    optim.__path__ = [str(root / "optim")]
    sys.modules["timm"], sys.modules["timm.optim"] = package, optim
    package.optim = optim
    module = importlib.import_module("timm.optim.rmsprop_tf")
    optim.RMSpropTF = module.RMSpropTF
    return module.RMSpropTF
