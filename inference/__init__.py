"""styletrain's runtime: apply exported style networks to images, frame folders and videos.

This package imports only torch, numpy, safetensors, PyAV and Pillow; it never imports
lightning, wandb, datasets or :mod:`styletrain`, so a user who only stylizes videos can
install it without the training stack.
"""

__version__ = "0.1.0"
