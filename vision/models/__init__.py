"""The zoo's methods, one module each; importing this package registers all of them in `MODELS`.

Every module in this folder is imported, so a new method is one new file: a config dataclass,
a `VisionModel` subclass and `@MODELS.register(name)`.
"""

import importlib
import pkgutil

__all__ = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]

for _name in __all__:
    importlib.import_module(f"{__name__}.{_name}")
