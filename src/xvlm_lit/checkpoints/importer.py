"""Strict import of a state dict into a module through a :class:`~xvlm_lit.checkpoints.keymap.KeyMap`.

Every tensor of the module is loaded, or kept at its initialisation by a named rule; every source tensor is loaded
or listed as intentionally unused. Anything else (a source key no rule consumes, a model key whose source is
absent, a shape that no adapter can fix) is an error naming the keys, raised before any weight is touched.
Tied parameters (the MLM decoder and the word embeddings) are written once, through the shared tensor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from xvlm_lit.checkpoints.keymap import KeepInit, KeyMap, Rename, Rule, reference_keymap
from xvlm_lit.checkpoints.resize import DEFAULT_ADAPTERS, Adapter

log = logging.getLogger(__name__)

_SHOW = 10  # problems listed in an error message (the rest are counted by kind)


class CheckpointMismatchError(ValueError):
    """A source and a model do not match under the key map; ``problems`` lists every mismatch. The message shows
    a count per kind of problem and the first few, one per line, so that it stays readable in a terminal."""

    def __init__(self, source: str, problems: Sequence[str], hint: str = "") -> None:
        self.problems = list(problems)
        super().__init__(format_problems(source, self.problems, hint))


def format_problems(source: str, problems: Sequence[str], hint: str = "", show: int = _SHOW) -> str:
    """``<source>: N problem(s) ...`` then counts by kind, the first ``show`` problems and ``... and M more``."""
    kinds: dict[str, int] = {}
    for p in problems:
        kind = p.split(":", 1)[0] if ":" in p else "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    lines = [f"{source}: {len(problems)} problem(s) importing the checkpoint ({counts}):"]
    lines += [f"  {p}" for p in problems[:show]]
    if len(problems) > show:
        lines.append(f"  ... and {len(problems) - show} more")
    if hint:
        lines.append(hint)
    return "\n".join(lines)


@dataclass
class ImportReport:
    """What an import did: ``mapped`` our key <- source key; ``unused`` source key -> reason; ``initialised`` our
    key -> reason it kept its initialisation; ``tied`` our key -> the key it shares its tensor with (written once);
    ``resized`` our key -> (source shape, model shape)."""

    source: str
    keymap: str
    mapped: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    initialised: dict[str, str] = field(default_factory=dict)
    tied: dict[str, str] = field(default_factory=dict)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.source} ({self.keymap}): {len(self.mapped)} tensors loaded, {len(self.tied)} tied, "
                f"{len(self.resized)} resized, {len(self.initialised)} kept at init, "
                f"{len(self.unused)} source tensors intentionally unused")


def _tie_groups(state: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Our keys grouped by the tensor object they hold (``state_dict(keep_vars=True)`` keeps ties visible)."""
    groups: dict[int, list[str]] = {}
    for key, value in state.items():
        groups.setdefault(id(value), []).append(key)
    return list(groups.values())


def _adapt(root: nn.Module, key: str, value: torch.Tensor, adapters: Sequence[Adapter]) -> torch.Tensor:
    for adapter in adapters:
        out = adapter(root, key, value)
        if out is not None:
            return out
    return value


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def import_state_dict(module: nn.Module, source: Mapping[str, torch.Tensor], keymap: KeyMap,
                      source_name: str = "<state dict>",
                      adapters: Sequence[Adapter] = DEFAULT_ADAPTERS) -> ImportReport:
    """Load ``source`` into ``module`` under ``keymap``, strictly (see the module docstring).

    Raises:
        CheckpointMismatchError: listing every unexpected source key, missing source key, shape mismatch and
            disagreeing tied pair; the module is left untouched.
    """
    target = module.state_dict(keep_vars=True)
    report = ImportReport(source=source_name, keymap="+".join(keymap.parts) or keymap.name)
    problems: list[str] = []
    values: dict[str, torch.Tensor] = {}  # our key -> value to write (one per tie group)
    consumed: set[str] = set()

    for group in _tie_groups(target):
        loaded_from: tuple[str, torch.Tensor] | None = None  # (our key, value) written for this group
        for key in group:
            rule: Rule | None = keymap.rule_for(key)
            if rule is None:
                problems.append(f"model key {key!r}: no rule in the {report.keymap} key map")
                continue
            if isinstance(rule, KeepInit):
                report.initialised[key] = rule.reason
                continue
            assert isinstance(rule, Rename)
            src = rule.source_key(key)
            if src not in source:
                if rule.optional or len(group) > 1:
                    continue  # settled below: optional keeps init, a tie may be fed by another member
                problems.append(f"missing in source: {src!r} (for model key {key!r})")
                continue
            consumed.add(src)
            value = source[src]
            want = _shape(target[key])
            if _shape(value) != want:
                value = _adapt(module, key, value, adapters)
                if _shape(value) != want:
                    problems.append(f"shape mismatch: source {src!r} {_shape(source[src])} vs model {key!r} {want}")
                    continue
                report.resized[key] = (_shape(source[src]), want)
            if loaded_from is None:
                loaded_from = (key, value)
                values[key] = value
                report.mapped[key] = src
            elif not torch.equal(loaded_from[1].to(value.dtype), value):
                problems.append(f"tied model keys {loaded_from[0]!r} and {key!r} share one tensor but their sources "
                                f"{report.mapped[loaded_from[0]]!r} and {src!r} differ")
            else:
                report.tied[key] = loaded_from[0]
                report.mapped[key] = src
        if loaded_from is None:
            _settle_unloaded(group, keymap, report, problems)
        else:  # the other members (own source absent, or KeepInit) receive the loaded value through the tie
            for key in group:
                if key not in report.mapped:
                    report.initialised.pop(key, None)
                    report.tied[key] = loaded_from[0]

    for src in source:
        if src in consumed:
            continue
        reason = keymap.unused_reason(src)
        if reason is None:
            problems.append(f"unexpected in source: {src!r} {_shape(source[src])} (no rule maps it to the model; "
                            "list it as Unused if that is intended)")
        else:
            report.unused[src] = reason

    if problems:
        raise CheckpointMismatchError(source_name, problems)
    with torch.no_grad():
        for key, value in values.items():
            target[key].copy_(value)
    log.info(report.summary())
    return report


def _settle_unloaded(group: list[str], keymap: KeyMap, report: ImportReport, problems: list[str]) -> None:
    """A tie group none of whose members was loaded: fine if every Rename member is optional."""
    for key in group:
        rule = keymap.rule_for(key)
        if isinstance(rule, Rename) and key not in report.mapped:
            if rule.optional:
                report.initialised[key] = f"optional source {rule.source_key(key)!r} absent"
            elif len(group) > 1:
                problems.append(f"missing in source: {rule.source_key(key)!r} (for model key {key!r}, "
                                f"nor any key tied to it: {group})")


def load_reference_checkpoint(model: nn.Module, path: str | os.PathLike,
                              rules: Sequence[Rule] = (), unused: Sequence = ()) -> ImportReport:
    """Load a reference X-VLM checkpoint (``{"model": state_dict, ...}`` or a bare state dict, SPEC section 8)
    into our ``model`` at its own image size.

    Args:
        rules: task-specific rules put in front of the reference ones (e.g. a VQA decoder fed by fusion layers).
        unused: extra source keys to accept as intentionally unused.
    """
    from xvlm_lit.checkpoints.sources import read_source

    src = read_source(path)
    keymap = reference_keymap(model).with_rules(rules, unused, name="task" if rules or unused else "")
    return import_state_dict(model, src.state_dict, keymap, source_name=str(path))


def init_from(model: nn.Module, path: str | os.PathLike, rules: Sequence[Rule] = (),
              unused: Sequence = ()) -> ImportReport:
    """Initialise ``model`` from any supported file (``model.init_from=<path>``): a reference ``.th``/``.pth``
    (``{"model": sd}``), a bare state dict in either layout, our safetensors export, or a Lightning checkpoint
    (``state_dict`` with our keys under ``model.``). The layout is recognised from the keys; see
    :mod:`xvlm_lit.checkpoints.sources`. Task models (VQA, NLVR2, a reference captioning file) read through their
    own maps (:mod:`xvlm_lit.checkpoints.auto`)."""
    from xvlm_lit.checkpoints.auto import auto_keymap
    from xvlm_lit.checkpoints.sources import read_source

    src = read_source(path)
    keymap = auto_keymap(model, src).with_rules(rules, unused, name="task" if rules or unused else "")
    return import_state_dict(model, src.state_dict, keymap, source_name=str(path))
