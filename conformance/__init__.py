"""rmsprop-conformance: certify RMSProp implementations against the executable spec."""

from conformance.backend import FEATURES, Backend, Capabilities
from conformance.case import Case, Trajectory

__all__ = ["FEATURES", "Backend", "Capabilities", "Case", "Trajectory"]
__version__ = "0.1.0"
