"""Typed configs: dataclasses built from YAML, with ``--set a.b=c`` overrides.

A YAML file may name a ``base:`` file (relative to itself) whose values it overrides, so a preset
only states what differs. Every key is checked against the dataclass: a misspelt key is an error
naming it and the closest valid key, never a silently ignored setting.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from .errors import BevkdError

T = TypeVar("T")

# the shipped configs (teacher/, student/, distill/, presets/): package data, so that they come
# with bevkd however it is installed (a repository checkout links `configs` to them)
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def _shipped(path: str) -> str | None:
    """The shipped config that ``configs/<kind>/<file>`` names, where there is one."""
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) == 3 and parts[0] == "configs":
        shipped = os.path.join(CONFIGS_DIR, *parts[1:])
        if os.path.isfile(shipped):
            return shipped
    return None


def shipped_config(path: str) -> str:
    """``path`` where it is a file; else, for ``configs/<kind>/<file>`` (the README's spelling,
    relative to a checkout of the repository), the shipped config of that name where there is
    one, so that the same command works in any folder with bevkd installed; else ``path``."""
    return path if os.path.isfile(path) else _shipped(path) or path


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"


def _not_a_list(value: Any, where: str) -> BevkdError:
    # a mapping here is what `--set a.list.item.x=...` makes of a list the config leaves empty
    more = (f" (`--set {where}.<item>...` names an item of a list this config leaves empty)"
            if isinstance(value, dict) else "")
    return BevkdError(f"{where}: expected a list, got {value!r}{more}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` (from YAML) as type ``hint``, or a BevkdError naming ``where``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except BevkdError as err:
                errors.append(str(err))
        raise BevkdError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise BevkdError(f"{where}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return from_dict(hint, value, where)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise _not_a_list(value, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise BevkdError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        (arg,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise _not_a_list(value, where)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BevkdError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise BevkdError(f"{where}: expected true/false, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise BevkdError(f"{where}: expected a number, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise BevkdError(f"{where}: expected an integer, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise BevkdError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys are errors with a suggestion."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise BevkdError(f"unknown config key {path!r}{_suggest(str(key), sorted(fields))}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise BevkdError(f"{where or cls.__name__}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two plain configs (:func:`to_dict` output) differ, sorted."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [key for k in sorted(set(a) | set(b))
                for key in differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str) -> dict:
    """A config file with its ``base:`` chain resolved (paths relative to each file; a
    ``configs/<kind>/<file>`` base that is not there is the shipped one, :func:`shipped_config`:
    ``base: configs/presets/tiny.yaml`` in a preset of one's own, anywhere)."""
    if not os.path.isfile(path):
        raise BevkdError(f"config file {path} does not exist")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise BevkdError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise BevkdError(f"config file {path} must hold a mapping")
    base = data.pop("base", None)
    if base is not None:
        near = os.path.join(os.path.dirname(os.path.abspath(path)), base)
        data = _merge(read_yaml(near if os.path.isfile(near) else _shipped(base) or near), data)
    return data


def _list_item(node: list, part: str, item: str) -> int:
    """The index that ``part`` names in ``node``: a position (``0``) or the ``type`` of exactly
    one of its mapping items (``asd`` in ``distill.methods``)."""
    if part.isdigit():
        if int(part) >= len(node):
            raise BevkdError(f"override {item!r}: no list item {part!r}")
        return int(part)
    hits = [i for i, x in enumerate(node) if isinstance(x, dict) and x.get("type") == part]
    if len(hits) != 1:
        types = [x.get("type") for x in node if isinstance(x, dict) and "type" in x]
        raise BevkdError(f"override {item!r}: " + (
            f"{len(hits)} list items of type {part!r}; name the one by its index "
            f"({', '.join(map(str, hits))})" if hits else
            f"no list item {part!r}" + (f" (items by type: {', '.join(types)})" if types
                                        else "")))
    return hits[0]


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["a.b=1", "c=[1, 2]"]`` applied to nested mapping ``data`` (values parsed as YAML). A
    list item is named by its index or, for a list of typed mappings, by its ``type``:
    ``distill.methods.1.args.x=1`` and ``distill.methods.asd.args.x=1`` are the same where
    ``asd`` is the second method."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BevkdError(f"override {item!r} must look like key.path=value")
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):  # e.g. distill.methods.0.args.x
                node = node[_list_item(node, part, item)]
            else:
                if part not in node and parts[i + 1].isdigit():  # a list the config leaves empty
                    raise BevkdError(f"override {item!r}: {'.'.join(parts[:i + 1])} is empty in "
                                     f"this config, so it has no item {parts[i + 1]}")
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise BevkdError(f"override {item!r}: {part!r} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            node[_list_item(node, last, item)] = yaml.safe_load(raw)
        else:
            node[last] = yaml.safe_load(raw)
    return data


def load_config(cls: type[T], path: str, overrides: list[str] | None = None) -> T:
    """Typed config from a YAML file (+ ``base:`` chain) and ``--set`` overrides."""
    return from_dict(cls, apply_overrides(read_yaml(path), overrides or []))
