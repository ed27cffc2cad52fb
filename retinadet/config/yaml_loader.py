"""Reading a config file's YAML: safe YAML only, plus detectron2's arithmetic ``eval`` tag.

``yaml.SafeLoader`` refuses every ``!!python/...`` tag, so nothing in a config runs. One tag is read
rather than refused: ``!!python/object/apply:eval ["<expression>"]``, which detectron2's model-zoo configs
use for anchor sizes; its expression is evaluated by ``safe_eval.safe_evaluate`` (a whitelist over
Python's ``ast``, never ``eval``). Every other Python tag stays an error naming it.
"""
from typing import Any

import yaml

from .safe_eval import safe_evaluate

__all__ = ["EVAL_TAG", "load_config_yaml"]

EVAL_TAG = "tag:yaml.org,2002:python/object/apply:eval"


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also reads the arithmetic eval tag (see the module docstring)."""


def _construct_eval(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        arguments = loader.construct_sequence(node, deep=True)
    else:
        arguments = [loader.construct_scalar(node)]
    if len(arguments) != 1 or not isinstance(arguments[0], str):
        raise yaml.constructor.ConstructorError(
            None, None, f"!!python/object/apply:eval takes one string, the expression; got {arguments!r}",
            node.start_mark)
    try:
        return safe_evaluate(arguments[0])
    except ValueError as e:
        raise yaml.constructor.ConstructorError(
            None, None, f"!!python/object/apply:eval [{arguments[0]!r}] is not evaluated: {e}", node.start_mark
        ) from None


_ConfigLoader.add_constructor(EVAL_TAG, _construct_eval)


def load_config_yaml(text: str) -> Any:
    """The YAML document ``text`` as plain Python values; ``yaml.YAMLError`` (a ``ConstructorError`` for
    a tag that is refused or an expression that is not allowed) otherwise."""
    return yaml.load(text, Loader=_ConfigLoader)
