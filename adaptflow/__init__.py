"""adaptflow: validated, versioned domain-adaptation pipelines (source domain -> target domain)."""

from adaptflow.errors import AdaptflowError

__all__ = ["AdaptflowError"]
__version__ = "0.1.0"
