"""Checking a class, and an instance of it, against a registry's contract (a ``typing.Protocol``).

A contract's members are read from the Protocol classes of its MRO: its public functions and
classmethods (and ``__call__``) are methods the class must have, callable with the same number of
positional arguments; its annotated names are attributes every instance must have. ``nn.Module``'s
placeholder ``forward`` does not count as a ``forward``.
"""
import inspect
from typing import Any, Dict, List, Optional, Tuple

from torch import nn

__all__ = ["contract_members", "check_class", "check_instance", "source_location", "ContractError"]


class ContractError(TypeError):
    """A registered class, or an instance of it, does not have what its registry's contract requires."""


def contract_members(contract: type) -> Tuple[Dict[str, Any], List[str]]:
    """({method name: the Protocol's function or classmethod}, [attribute names]) of ``contract``."""
    methods: Dict[str, Any] = {}
    attributes: List[str] = []
    for klass in reversed(contract.__mro__):
        if not klass.__dict__.get("_is_protocol", False) or klass.__module__ == "typing":
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") and name != "__call__":
                continue
            if inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod)):
                methods[name] = value
        for name in vars(klass).get("__annotations__", {}):
            if not name.startswith("_") and name not in attributes:
                attributes.append(name)
    return methods, attributes


def _positional_count(function: Any) -> int:
    """Positional parameters of a contract method, ``self`` / ``cls`` excluded."""
    function = function.__func__ if isinstance(function, (classmethod, staticmethod)) else function
    params = list(inspect.signature(function).parameters.values())[1:]
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _call_form(name: str, function: Any) -> str:
    function = function.__func__ if isinstance(function, (classmethod, staticmethod)) else function
    params = list(inspect.signature(function).parameters)[1:]
    return f"{name}({', '.join(params)})"


def source_location(obj: Any) -> Optional[str]:
    """``"file:line"`` where the class or function ``obj`` is defined, or None when Python cannot tell."""
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError):
        return None


def _describe(cls: Any, family: str, registered_as: str) -> str:
    location = source_location(cls)
    where = f", {location}" if location else ""
    name = getattr(cls, "__qualname__", repr(cls))
    return f"{getattr(cls, '__module__', '?')}.{name} (registered as {registered_as} in {family}{where})"


def _method_problem(cls: type, name: str, expected: Any) -> Optional[str]:
    """Why ``cls`` lacks the contract's method ``name``, or None when it has a fitting one."""
    static = inspect.getattr_static(cls, name, None)
    if static is None or (name == "forward" and getattr(cls, "forward", None) is nn.Module.forward):
        return f"no method {_call_form(name, expected)}"
    if isinstance(expected, classmethod) and not isinstance(static, (classmethod, staticmethod)):
        return f"{name} is not a classmethod (declare it with @classmethod: {_call_form(name, expected)})"
    bound = getattr(cls, name)
    if name == "from_config":
        return None  # its keyword context is checked against what the builder passes
    if not callable(bound):
        return f"{name} is a {type(bound).__name__}, not a method {_call_form(name, expected)}"
    try:
        signature = inspect.signature(bound)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: nothing to check
    # Plain functions looked up on the class still take self; classmethods come bound.
    count = _positional_count(expected) + (0 if isinstance(static, (classmethod, staticmethod)) else 1)
    try:
        signature.bind(*[None] * count)
    except TypeError as e:
        return (f"{name}{signature} cannot be called as the contract's {_call_form(name, expected)} "
                f"({e})")
    return None


def check_class(cls: Any, contract: Optional[type], family: str, registered_as: str,
                context: Optional[Dict[str, Any]] = None) -> None:
    """ContractError unless ``cls`` is a class with every method of ``contract`` (None: only a
    ``from_config`` classmethod is required) and its ``from_config`` accepts ``cfg`` plus the
    keyword arguments ``context`` that the builder passes. ``family`` ("the HEAD registry") and
    ``registered_as`` ("'MyHead'") go into the message."""
    if not inspect.isclass(cls):
        raise ContractError(f"{_describe(cls, family, registered_as)} is a {type(cls).__name__}; "
                            "a registry holds classes built as cls(**cls.from_config(cfg, ...)).")
    methods = contract_members(contract)[0] if contract is not None else {}
    if "from_config" not in methods:
        methods = {"from_config": classmethod(lambda cls, cfg: {}), **methods}
    problems = [p for p in (_method_problem(cls, name, fn) for name, fn in methods.items()) if p]
    if context is not None and not any(p.startswith(("no method from_config", "from_config")) for p in problems):
        try:
            inspect.signature(cls.from_config).bind(None, **context)
        except TypeError as e:
            given = ", ".join(["cfg", *(f"{k}=..." for k in context)])
            problems.append(f"from_config{inspect.signature(cls.from_config)} does not accept what {family} "
                            f"passes, from_config({given}) ({e})")
        except ValueError:
            pass
    if problems:
        contract_name = contract.__name__ if contract is not None else "registry"
        raise ContractError(f"{_describe(cls, family, registered_as)} does not meet the {contract_name} "
                            f"contract (retinadet/registry.py): " + "; ".join(problems) + ".")


def check_instance(obj: Any, contract: Optional[type], family: str, registered_as: str) -> None:
    """ContractError unless ``obj`` has every attribute the contract annotates."""
    if contract is None:
        return
    missing = [name for name in contract_members(contract)[1] if not hasattr(obj, name)]
    if missing:
        raise ContractError(
            f"{_describe(type(obj), family, registered_as)} does not meet the {contract.__name__} contract "
            f"(retinadet/registry.py): its instances have no attribute {', '.join(missing)} "
            "(set it in __init__ or as a class attribute)."
        )
