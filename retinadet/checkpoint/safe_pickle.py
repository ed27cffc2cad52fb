"""Read pickled weights files (detectron2's model-zoo ``.pkl``) without running code from them.

Unpickling calls whatever callables the file names, so a plain ``pickle.load`` of a weights file can
run any command. The model-zoo format needs nothing but plain containers, numbers, strings and numpy
arrays, so ``load_restricted_pickle`` admits exactly the globals numpy's arrays and scalars are
rebuilt with (and ``collections.OrderedDict``) and refuses every other global before it is called.
"""
import io
import pickle
from typing import Any, BinaryIO, FrozenSet, Tuple

__all__ = ["ALLOWED_GLOBALS", "DisallowedGlobalError", "load_restricted_pickle", "loads_restricted"]

# (module, name) pairs a weights pickle may name: numpy 1.x and 2.x spell the array and scalar
# reconstructors under numpy.core and numpy._core; protocol 5 rebuilds arrays with _frombuffer.
ALLOWED_GLOBALS: FrozenSet[Tuple[str, str]] = frozenset(
    [(f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")]
    # Protocols 0-2 written by Python 3 spell a bytes object as _codecs.encode(text, "latin1").
    + [("_codecs", "encode")]
    # numpy's dtype classes (numpy.dtypes.Float32DType, ...) in pickles written by numpy 2.
    + [("numpy.dtypes", f"{kind}DType") for kind in (
        "Bool", "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float16", "Float32",
        "Float64", "LongDouble", "Complex64", "Complex128", "Bytes", "Str")]
)


class DisallowedGlobalError(pickle.UnpicklingError):
    """A pickle named a global outside ``ALLOWED_GLOBALS``; ``module`` and ``name`` say which."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name
        super().__init__(
            f"it refers to the global {module}.{name}, which a weights file does not need (only numpy arrays, "
            "plain containers, strings and numbers are loaded from pickles)"
        )


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles name Python 3 modules by their old names (pickle maps them itself).
        if (module, name) not in ALLOWED_GLOBALS and _python3_name(module, name) not in ALLOWED_GLOBALS:
            raise DisallowedGlobalError(module, name)
        return super().find_class(module, name)


def _python3_name(module: str, name: str) -> Tuple[str, str]:
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


def load_restricted_pickle(file: BinaryIO, encoding: str = "latin1") -> Any:
    """Unpickle ``file`` (a binary file object) admitting only ``ALLOWED_GLOBALS``.

    ``encoding`` decodes Python 2 strings; latin1 (the default) keeps the bytes of the numpy arrays in
    detectron2's Python 2 pickles intact. Returns the unpickled object; raises
    ``DisallowedGlobalError`` (a ``pickle.UnpicklingError``) before calling any other global."""
    return _RestrictedUnpickler(file, encoding=encoding).load()


def loads_restricted(data: bytes, encoding: str = "latin1") -> Any:
    """``load_restricted_pickle`` of the bytes ``data``."""
    return load_restricted_pickle(io.BytesIO(data), encoding=encoding)
