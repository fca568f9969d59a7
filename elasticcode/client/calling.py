"""The calling API Celery users type first, shared by sockets, partials and combinators.

    thing(*args)                      # Socket: the result; a partial or a combinator: a handle
    thing.delay(*args, **kwargs)      # a handle at once
    thing.apply_async(args=(...), kwargs={...}, countdown=10, eta=datetime, expires=60)

`delay` and `apply_async` return the same handle type whatever the options: a `CallHandle` for
a socket or a partial, a `FlowRun` for pipeline/parallel/funnel. As in Celery, positional
arguments given at call time are prepended to a partial's own, keyword arguments update its own.
"""

from __future__ import annotations

from datetime import datetime
from numbers import Real
from typing import Any

from ..errors import ElasticCodeError

OPTIONS = ("args", "kwargs", "countdown", "eta", "expires")


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or value != value or value < 0:
        raise ElasticCodeError(f"{name}={value!r} is not a number of seconds: pass e.g. {name}=10")
    return float(value)


def _moment(value: datetime) -> datetime:
    # A naive datetime means local time, as everywhere else in Python (Celery would read it as UTC).
    return value if value.tzinfo is not None else value.astimezone()


def call_options(countdown: Any = None, eta: Any = None, expires: Any = None) -> dict[str, Any]:
    """Celery's scheduling options, checked here so a mistake is one clear line, not a broker error."""
    options: dict[str, Any] = {}
    if countdown is not None and eta is not None:
        raise ElasticCodeError("give either countdown= (seconds from now) or eta= (a datetime), not both")
    if countdown is not None:
        options["countdown"] = _seconds("countdown", countdown)
    if eta is not None:
        if not isinstance(eta, datetime):
            raise ElasticCodeError(f"eta={eta!r} is not a datetime: pass e.g. eta=datetime.now() + timedelta(minutes=5)")
        options["eta"] = _moment(eta)
    if expires is not None:
        options["expires"] = _moment(expires) if isinstance(expires, datetime) else _seconds("expires", expires)
    return options


def call_arguments(args: Any, kwargs: Any) -> tuple[tuple, dict]:
    """`apply_async`'s args and kwargs, checked: a string for args is the classic slip (args="x")."""
    if args is None:
        args = ()
    elif isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise ElasticCodeError(f"args={args!r} is not a list or tuple of positional arguments: pass e.g. args=({args!r},)")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ElasticCodeError(f"kwargs={kwargs!r} is not a dict of keyword arguments: pass e.g. kwargs={{'name': value}}")
    return tuple(args), dict(kwargs)


class Callable:
    """`delay` and `apply_async` over one method, `_send(args, kwargs, options)`, that subclasses define."""

    def _send(self, args: tuple, kwargs: dict, options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send at once and return a handle (Celery's `delay`)."""
        return self._send(args, kwargs, {})

    def apply_async(self, args: Any = None, kwargs: Any = None, countdown: Any = None, eta: Any = None,
                    expires: Any = None, **unsupported: Any) -> Any:
        """Send with options and return a handle (Celery's `apply_async`).

        `countdown` (seconds) or `eta` (a datetime) delays the start; `expires` (seconds or a
        datetime) drops a call not started by then. In a workflow they apply to the calls it
        starts with (as Celery applies them to a chain's first task and to each task of a group).
        """
        if unsupported:
            raise ElasticCodeError(f"apply_async does not take {', '.join(sorted(unsupported))}: it takes "
                                   f"{', '.join(OPTIONS)}")
        args, kwargs = call_arguments(args, kwargs)
        return self._send(args, kwargs, call_options(countdown, eta, expires))


__all__ = ["Callable", "call_options", "call_arguments"]
