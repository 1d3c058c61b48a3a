"""Feature specs and model parameters as plain JSON, and back.

A run folder stores the model's registry name and its constructor parameters. Parameters that
hold features (``features``, ``*_features``, ``*_feature``) are stored by feature name
(``{"$features": ["C1", "C2"]}`` or ``{"$feature": "hist_item_id"}``) next to the specs of
every feature, so :func:`trainhub.load_run` rebuilds the same model without the original script.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping

from trainhub import features as F

__all__ = [
    "feature_to_dict",
    "feature_from_dict",
    "is_feature_param",
    "resolve_feature_refs",
    "params_to_json",
    "params_from_json",
    "check_model_params",
]

_KINDS = {"sparse": F.SparseFeature, "sequence": F.SequenceFeature, "dense": F.DenseFeature}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
_INITIALIZERS = {cls.__name__: cls for cls in (F.RandomNormal, F.RandomUniform, F.XavierNormal, F.XavierUniform)}


def feature_to_dict(feature: Any) -> dict[str, Any]:
    """``{"kind": "sparse", "name": ..., "vocab_size": ..., "embed_dim": ..., ...}``."""
    kind = _KIND_OF.get(type(feature))
    if kind is None:
        raise TypeError(f"cannot store {type(feature).__name__} as a feature spec")
    out: dict[str, Any] = {"kind": kind}
    for f in dataclasses.fields(feature):
        value = getattr(feature, f.name)
        if f.name == "initializer":
            if type(value).__name__ not in _INITIALIZERS:
                raise TypeError(f"feature {feature.name!r}: initializer {type(value).__name__} cannot be stored")
            value = {"type": type(value).__name__, **dataclasses.asdict(value)}
        out[f.name] = value
    return out


def feature_from_dict(spec: Mapping[str, Any]) -> Any:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"feature spec {spec.get('name')!r}: unknown kind {kind!r} (sparse, sequence, dense)")
    init = spec.get("initializer")
    if isinstance(init, Mapping):
        init = dict(init)
        cls = _INITIALIZERS.get(init.pop("type", None))
        if cls is None:
            raise ValueError(f"feature spec {spec.get('name')!r}: unknown initializer {init}")
        spec["initializer"] = cls(**init)
    return _KINDS[kind](**spec)


def is_feature_param(name: str) -> bool:
    """Torch-RecHub names every feature argument ``features``, ``*_features`` or ``*_feature``."""
    return name == "features" or name.endswith("_features") or name.endswith("_feature")


def resolve_feature_refs(value: Any, features: Mapping[str, Any], groups: Mapping[str, list[str]],
                         where: str) -> Any:
    """Names -> feature objects. A string naming a group gives a list; a string naming a column
    gives that one feature; a list gives the concatenation of its items (groups expanded)."""

    def one(name: Any) -> list[Any]:
        if not isinstance(name, str):
            raise ValueError(f"{where}: expected column or group names, got {name!r}")
        if name in groups:
            return [features[n] for n in groups[name]]
        if name in features:
            return [features[name]]
        raise ValueError(f"{where}: {name!r} is neither a feature column ({', '.join(list(features)[:30])}) "
                         f"nor a group ({', '.join(groups)})")

    if value is None:
        return None
    if isinstance(value, str):
        found = one(value)
        return found if value in groups else found[0]
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        for item in value:
            out.extend(one(item))
        return out
    raise ValueError(f"{where}: expected a column name, a group name or a list of them, got {value!r}")


def params_to_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """Replace features by their names (``{"$feature": name}`` / ``{"$features": [...]}``)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, tuple(_KIND_OF)):
            out[key] = {"$feature": value.name}
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, tuple(_KIND_OF)) for v in value):
            out[key] = {"$features": [v.name for v in value]}
        elif is_feature_param(key) and isinstance(value, (list, tuple)) and not value:
            out[key] = {"$features": []}
        else:
            out[key] = value
    return out


def params_from_json(params: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`params_to_json` given ``{name: feature}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and set(value) == {"$feature"}:
            out[key] = features[value["$feature"]]
        elif isinstance(value, Mapping) and set(value) == {"$features"}:
            out[key] = [features[n] for n in value["$features"]]
        else:
            out[key] = value
    return out


def check_model_params(cls: type, params: Mapping[str, Any], where: str = "model.params") -> None:
    """Unknown and missing constructor arguments, named, before the model is built."""
    signature = inspect.signature(cls)
    accepted = {n: p for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [k for k in params if k not in accepted]
    if unknown and not takes_any:
        raise ValueError(f"{where}.{unknown[0]}: {cls.__name__} takes no parameter {unknown[0]!r} "
                         f"(it takes {', '.join(accepted)})")
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise ValueError(f"{where}: {cls.__name__} needs {', '.join(missing)}")
