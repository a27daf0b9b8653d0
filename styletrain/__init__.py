"""styletrain: train one feed-forward style network per painting with PyTorch Lightning.

Training depends on the runtime package :mod:`inference` (which owns the network
architectures and the artifact format), never the reverse.
"""

__version__ = "0.1.0"
