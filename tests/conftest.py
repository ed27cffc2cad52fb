"""What every test shares: the part registries are put back as they were after each test, so a test
that registers a plug-in (or a deliberately broken part) cannot leak it into another. Shared helpers
are in ``retinadet.utils.testing``; the box-op cases in ``tests.ops.op_cases``."""
import sys

import pytest

import retinadet.modeling  # noqa: F401  (registers the built-in parts before any snapshot)
from retinadet import registry


def _registries():
    return [value for value in vars(registry).values() if isinstance(value, registry.Registry)]


@pytest.fixture(autouse=True)
def restore_registries():
    """Snapshot every registry's entries before the test; after it, drop the entries it added and
    unload the modules that were imported during the test to define them (a plug-in file loaded
    through MODEL.PLUGINS), so the next test that names the plug-in imports and registers it again."""
    saved = {reg: dict(reg._obj_map) for reg in _registries()}
    modules_before = set(sys.modules)
    yield
    for reg, entries in saved.items():
        for name, obj in list(reg._obj_map.items()):
            if entries.get(name) is not obj:
                module = getattr(obj, "__module__", None)
                if module not in modules_before:
                    sys.modules.pop(module, None)
        reg._obj_map.clear()
        reg._obj_map.update(entries)
