"""The schema of a composed config: every node with a ``_target_`` accepts exactly its target's arguments.

:func:`check_keys` walks the config before anything is instantiated and raises ``ConfigError`` naming the full key
for a key the target does not take (with the closest valid key, by ``difflib``, and the valid keys) and for a value
whose type contradicts the target's annotation (``int``, ``float``, ``bool``, ``str``, ``Literal`` choices and
optional/union forms of these; other annotations are not checked). A target taking ``**kwargs`` accepts any key.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# keys the code reads itself before instantiating the node (see xvlm_lit.build.split_initialisers)
CONSUMED = {"model": {"init_from", "bert_path", "allow_random_init"}, "model.vision": {"pretrained_path"}}
_MISSING = object()


class SchemaError(ValueError):
    """A key or value that does not fit the target of its node (``ConfigError`` re-raises it with this text)."""


def closest(key: str, valid: list[str]) -> str | None:
    """The valid key closest to ``key`` (difflib ratio >= 0.6), or None."""
    found = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return found[0] if found else None


def target_parameters(target: str) -> tuple[dict[str, inspect.Parameter] | None, dict[str, Any]]:
    """(parameters of ``target`` or None when it takes ``**kwargs`` or cannot be inspected, its type hints)."""
    try:
        obj = get_object(target)
        fn: Callable = obj.__init__ if inspect.isclass(obj) else obj
        params = dict(inspect.signature(obj).parameters)
    except Exception:  # noqa: BLE001 - an unimportable target fails later, at instantiation, with hydra's message
        return None, {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None, {}
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check the keys only
        hints = {}
    return params, hints


def unknown_key_message(full_key: str, node_path: str, target: str, valid: list[str]) -> str:
    """``unknown config key 'trainer.max_stepz' (did you mean 'trainer.max_steps'?). Valid keys of trainer
    (lightning.pytorch.Trainer): ...``."""
    key = full_key.rsplit(".", 1)[-1]
    guess = closest(key, valid)
    hint = f" (did you mean '{node_path + '.' if node_path else ''}{guess}'?)" if guess else ""
    where = f"{node_path} ({target})" if target else (node_path or "the top level")
    return f"unknown config key '{full_key}'{hint}. Valid keys of {where}: {', '.join(sorted(valid))}"


def _allowed(hint: Any) -> tuple[tuple[type, ...], tuple[Any, ...] | None, bool] | None:
    """(accepted python types, Literal choices or None, None allowed) of a simple annotation; None = not checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, float, bool, str):
        return ({int: (int,), float: (int, float), bool: (bool,), str: (str,)}[hint], None, False)
    if origin is typing.Literal:
        return (tuple({type(a) for a in args}), args, False)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed(a) for a in args if a is not type(None)]
        if not parts or any(p is None for p in parts):
            return None
        kinds = tuple(t for p in parts for t in p[0])
        choices = [c for p in parts if p[1] is not None for c in p[1]]
        literal_only = all(p[1] is not None for p in parts)
        return (kinds, tuple(choices) if literal_only else None, type(None) in args)
    return None


def type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (None when it fits or the hint is not checked)."""
    allowed = _allowed(hint)
    if allowed is None or isinstance(value, DictConfig | ListConfig | dict | list):
        return None
    kinds, choices, none_ok = allowed
    if value is None:
        return None if none_ok else f"must not be null ({_name(hint)})"
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and choices is not None and value not in choices:
        return f"must be one of {list(choices)}, got {value!r}"
    return None if ok else f"must be {_name(hint)}, got {value!r} ({type(value).__name__})"


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _nodes(node: Any, path: str) -> Iterator[tuple[str, DictConfig]]:
    """Every DictConfig under ``node`` with its dotted path (lists indexed ``[i]``)."""
    if isinstance(node, DictConfig):
        yield path, node
        children = ((k, node._get_node(k)) for k in node.keys())
        items = [(f"{path}.{k}" if path else str(k), child) for k, child in children]
    elif isinstance(node, ListConfig):
        items = [(f"{path}[{i}]", node._get_node(i)) for i in range(len(node))]
    else:
        return
    for child_path, child in items:
        yield from _nodes(child, child_path)


def _value(node: DictConfig, key: str) -> Any:
    """The value of ``node[key]`` (interpolations resolved when possible, else not checked)."""
    try:
        return node[key]
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run: not checked
        return _MISSING


def check_node(path: str, node: DictConfig) -> None:
    """Raise :class:`SchemaError` for a key ``node``'s target does not take or a value of the wrong type."""
    target = node.get("_target_") if "_target_" in node else None
    if not isinstance(target, str):
        return
    params, hints = target_parameters(target)
    if params is None:
        return
    consumed = CONSUMED.get(path, set())
    valid = [p for p in params if p not in ("self", "args")] + sorted(consumed)
    for key in node.keys():
        key = str(key)
        if key in HYDRA_KEYS or key in consumed:
            continue
        full = f"{path}.{key}" if path else key
        if key not in params:
            raise SchemaError(unknown_key_message(full, path, target, valid))
        value = _value(node, key)
        problem = None if value is _MISSING or OmegaConf.is_missing(node, key) else type_problem(value, hints.get(key))
        if problem:
            raise SchemaError(f"config key '{full}' {problem}: it is the argument '{key}' of {target}")


def check_keys(cfg: DictConfig, skip: tuple[str, ...] = ("hydra",)) -> None:
    """Check every ``_target_`` node of ``cfg`` (see the module docstring); raises :class:`SchemaError`."""
    for path, node in _nodes(cfg, ""):
        if path.split(".", 1)[0].split("[", 1)[0] in skip:
            continue
        check_node(path, node)
