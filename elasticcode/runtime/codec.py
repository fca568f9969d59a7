"""JSON on the wire, for everything users pass around: datetimes, bytes, numpy arrays, pandas frames.

Extends kombu's JSON type registry (so Celery's plain `json` serializer carries them) without
importing numpy or pandas until a value of theirs is actually seen. Pickle is never involved.
"""

from __future__ import annotations

import abc
import json
from typing import Any

from kombu.utils import json as kombu_json


def _lazy_type(package: str, name: str) -> type:
    """An ABC matching instances of `package`'s class `name` (or subclasses), without importing it."""

    class Match(abc.ABC):  # noqa: B024 - matches by __subclasshook__, has nothing to implement
        @classmethod
        def __subclasshook__(cls, klass):
            return any(k.__name__ == name and k.__module__.split(".")[0] == package for k in klass.__mro__)

    Match.__name__ = f"Lazy{name}"
    return Match


DataFrame = _lazy_type("pandas", "DataFrame")
Series = _lazy_type("pandas", "Series")
Timestamp = _lazy_type("pandas", "Timestamp")
NDArray = _lazy_type("numpy", "ndarray")
NumpyScalar = _lazy_type("numpy", "generic")


def _frame_out(df) -> dict:
    split = json.loads(df.to_json(orient="split", date_format="iso", date_unit="us", default_handler=str))
    return {"split": split, "dtypes": {str(k): str(v) for k, v in df.dtypes.items()}}


def _frame_in(value: dict):
    import pandas as pd

    split = value["split"]
    frame = pd.DataFrame(split["data"], index=split.get("index"), columns=split["columns"])
    for column, dtype in value.get("dtypes", {}).items():
        try:
            if dtype.startswith("datetime64"):
                frame[column] = pd.to_datetime(frame[column], utc="UTC" in dtype or "tz" in dtype)
            else:
                frame[column] = frame[column].astype(dtype)
        except (TypeError, ValueError, KeyError):
            pass  # keep the JSON-native type rather than fail the whole call
    return frame


def _series_out(s) -> dict:
    return {"frame": _frame_out(s.to_frame(name=s.name if s.name is not None else 0)), "name": s.name}


def _series_in(value: dict):
    frame = _frame_in(value["frame"])
    series = frame.iloc[:, 0]
    series.name = value.get("name")
    return series


def _array_out(a) -> dict:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.tolist()}


def _array_in(value: dict):
    import numpy as np

    return np.array(value["data"], dtype=value["dtype"]).reshape(value["shape"])


def _timestamp_in(value: str):
    import pandas as pd

    return pd.Timestamp(value)


_installed = False


def install() -> None:
    """Register the extra types with kombu's JSON (idempotent; call before sending or receiving)."""
    global _installed
    if _installed:
        return
    # Order matters: kombu checks isinstance in registration order, and pandas Timestamp is
    # a datetime subclass, so it must be matched before kombu's own datetime entry.
    registry = dict(kombu_json._encoders)
    kombu_json._encoders.clear()
    kombu_json.register_type(Timestamp, "pd.timestamp", lambda t: t.isoformat(), _timestamp_in)
    kombu_json._encoders.update(registry)
    kombu_json.register_type(DataFrame, "pd.dataframe", _frame_out, _frame_in)
    kombu_json.register_type(Series, "pd.series", _series_out, _series_in)
    kombu_json.register_type(NDArray, "np.ndarray", _array_out, _array_in)
    kombu_json.register_type(NumpyScalar, None, lambda x: x.item())
    _installed = True


def dumps(value: Any) -> str:
    install()
    return kombu_json.dumps(value)


def loads(text: str | bytes) -> Any:
    install()
    return kombu_json.loads(text)


def parse_user_data(text: str) -> Any:
    """What a user typed as data: JSON, else a Python literal (the manual's "['some data']"), else the text.

    Literals go through ast.literal_eval, which evaluates no code.
    """
    import ast

    stripped = text.strip()
    if not stripped:
        return stripped
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.rstrip("\n")


__all__ = ["install", "dumps", "loads", "parse_user_data"]
