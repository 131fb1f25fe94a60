"""A stand-in for timm's package ``__init__`` on this machine only (it imports torchvision, which
cannot be imported here): ``PYTHONPATH=$PWD/tests/timm_stub:$PWD``. See ``tests/timm_shim.py``;
the optimizer imported is timm's own ``timm/optim/rmsprop_tf.py``."""

import sys

from tests.timm_shim import install

install(sys.modules[__name__])
