"""Evaluating the arithmetic of a YAML ``!!python/object/apply:eval ["..."]`` value without ``eval``.

detectron2's model-zoo configs write anchor sizes as
``!!python/object/apply:eval ["[[x, x * 2**(1.0/3), x * 2**(2.0/3)] for x in [32, 64, 128, 256, 512]]"]``.
``safe_evaluate`` parses such an expression with Python's ``ast`` and evaluates it over a whitelist:
int and float literals, lists, tuples, list comprehensions (``for`` a name ``in`` a list, tuple or
``range`` of literals; no ``if``), ``+ - * / **`` and unary ``+ -``. Anything else (names other than the
comprehension's, calls, attributes, subscripts, strings, lambdas, ...) is refused with a ValueError
naming the construct; nothing is ever executed. Sizes are bounded so a config cannot exhaust memory or
time (at most 100,000 list elements, exponents at most 64 in magnitude, integers of at most 1024 bits).
"""
import ast
import math
from typing import Any, Dict

__all__ = ["safe_evaluate"]

_MAX_ELEMENTS = 100_000
_MAX_EXPONENT = 64
_MAX_INT_BITS = 1024
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a ** b,
}


class _Evaluator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.elements = 0

    def refuse(self, node: ast.AST, why: str) -> ValueError:
        fragment = ast.get_source_segment(self.source, node) or type(node).__name__
        return ValueError(f"{why}: {fragment!r}. Only numbers, lists, tuples, list comprehensions and "
                          "+ - * / ** are evaluated")

    def count(self, n: int, node: ast.AST) -> None:
        self.elements += n
        if self.elements > _MAX_ELEMENTS:
            raise self.refuse(node, f"more than {_MAX_ELEMENTS} list elements")

    def number(self, value: Any, node: ast.AST) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.refuse(node, f"arithmetic on a {type(value).__name__}, not a number")
        return value

    def evaluate(self, node: ast.AST, names: Dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise self.refuse(node, f"a {type(node.value).__name__} literal is not allowed")
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            self.count(len(node.elts), node)
            values = [self.evaluate(e, names) for e in node.elts]
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise self.refuse(node, f"the name {node.id!r} is not a comprehension variable")
            return names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.number(self.evaluate(node.operand, names), node)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left = self.number(self.evaluate(node.left, names), node)
            right = self.number(self.evaluate(node.right, names), node)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise self.refuse(node, f"an exponent beyond +-{_MAX_EXPONENT}")
            try:
                result = _OPERATORS[type(node.op)](left, right)
            except (ZeroDivisionError, OverflowError) as e:
                raise self.refuse(node, str(e)) from None
            if isinstance(result, complex) or (isinstance(result, float) and not math.isfinite(result)):
                raise self.refuse(node, "a result that is not a finite real number")
            if isinstance(result, int) and result.bit_length() > _MAX_INT_BITS:
                raise self.refuse(node, f"an integer of more than {_MAX_INT_BITS} bits")
            return result
        if isinstance(node, ast.ListComp):
            return self.comprehension(node, names)
        raise self.refuse(node, f"{type(node).__name__} is not allowed")

    def iterable(self, node: ast.AST, names: Dict[str, Any]) -> list:
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
                and not node.keywords and 1 <= len(node.args) <= 3):
            bounds = [self.evaluate(a, names) for a in node.args]
            if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
                raise self.refuse(node, "range() of something other than integers")
            values = range(*bounds)
            self.count(len(values), node)
            return list(values)
        values = self.evaluate(node, names)
        if not isinstance(values, (list, tuple)):
            raise self.refuse(node, "a comprehension over something other than a list or tuple")
        return list(values)

    def comprehension(self, node: ast.ListComp, names: Dict[str, Any]) -> list:
        if len(node.generators) != 1:
            raise self.refuse(node, "a comprehension with more than one 'for'")
        generator = node.generators[0]
        if generator.ifs or generator.is_async or not isinstance(generator.target, ast.Name):
            raise self.refuse(node, "a comprehension with 'if', 'async' or an unpacking target")
        result = []
        for value in self.iterable(generator.iter, names):
            self.count(1, node)
            result.append(self.evaluate(node.elt, {**names, generator.target.id: value}))
        return result


def safe_evaluate(expression: str) -> Any:
    """The value of the arithmetic ``expression`` (see the module docstring): numbers, lists, tuples.
    ValueError naming the part of the expression that is not allowed, or a syntax error."""
    if not isinstance(expression, str):
        raise ValueError(f"expected the text of an expression, got a {type(expression).__name__}")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not a Python expression ({e.msg})") from None
    return _Evaluator(expression.strip()).evaluate(tree.body, {})
