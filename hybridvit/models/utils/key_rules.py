"""Rule-table renaming of checkpoint keys, shared by the converters (pure functions, no I/O).

A checkpoint layout is described by a :class:`KeyLayout`: an optional wrapper prefix to strip
(e.g. cvnets' DeepLabv3 ``encoder.``), a pattern naming the classifier / segmentation-head keys
to leave out, and an ordered table of ``(compiled regex, replacement)`` rules applied with
``re.sub`` one after the other. :func:`rename_keys` applies a layout to a whole state dict and
refuses to let two source keys land on one name.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from .checkpoint import CheckpointMismatchError

__all__ = ['Rule', 'KeyLayout', 'apply_rules', 'rename_keys']

Rule = Tuple[re.Pattern, Union[str, Callable[[re.Match], str]]]


class KeyLayout(NamedTuple):
    """How the keys of one checkpoint layout map to hybridvit names.

    Args:
        rules: ``(pattern, replacement)`` pairs, applied in order as ``pattern.sub(repl, key)``.
        head: keys (after ``strip``) matching this pattern are left out and reported as dropped.
        strip: regular expression of a wrapper prefix removed before ``head`` and ``rules``.
    """
    rules: Sequence[Rule]
    head: Optional[re.Pattern] = None
    strip: Optional[str] = None


def apply_rules(rules: Sequence[Rule], key: str) -> str:
    """Apply every rule of ``rules`` to ``key`` in order."""
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def rename_keys(state_dict: Dict[str, torch.Tensor], layout: Optional[KeyLayout]
                ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Rename the keys of ``state_dict`` by ``layout`` (``None``: keep every key as it is).

    Returns:
        ``(converted, dropped)``: the renamed dict (tensors shared, not copied) and the original
        names of the head keys left out. Keys no rule matches pass through unchanged, so that a
        strict load reports them.

    Raises:
        CheckpointMismatchError: two keys have the same name after renaming.
    """
    converted: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    dropped: List[str] = []
    for key, value in state_dict.items():
        new_key = key
        if layout is not None:
            stripped = re.sub(layout.strip, '', key) if layout.strip else key
            if layout.head is not None and layout.head.match(stripped):
                dropped.append(key)
                continue
            new_key = apply_rules(layout.rules, stripped)
        if new_key in converted:
            raise CheckpointMismatchError(
                f'checkpoint keys collide after conversion: "{key}" -> "{new_key}"')
        converted[new_key] = value
    return converted, dropped
