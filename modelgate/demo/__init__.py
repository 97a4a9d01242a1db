"""The example models: a small digits CNN, built plain, signed, unsigned and tampered.

Importable without torch; building or loading a model imports it.
"""

from modelgate.demo.build import EXAMPLES, build_examples, default_key_path, default_public_key_path
from modelgate.demo.cnn import CnnConfig, load_model, read_config

__all__ = [
    "EXAMPLES",
    "CnnConfig",
    "build_examples",
    "default_key_path",
    "default_public_key_path",
    "load_model",
    "read_config",
]
