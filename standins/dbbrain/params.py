"""DBbrain's checks of request parameters: unknown, missing, of the wrong type, or a bad value.

The real service refuses such requests before doing anything, with these error codes, so the
emulator refuses them too: a bot that sends a wrong type must fail in tests, not in production.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from standins.dbbrain.calls import ApiError

# The type of a list parameter's items; every other list holds strings. None: anything.
LIST_ITEMS: dict[str, type | None] = {"Threads": int, "StatDimensions": None, "Severities": int}


def check_params(params: dict[str, Any], spec: dict[str, type], required: Iterable[str]) -> None:
    for name in params:
        if name not in spec:
            raise ApiError("UnknownParameter", f"The parameter `{name}` is not recognized.")
    for name in required:
        if name not in params:
            raise missing(name)
    for name, value in params.items():
        kind = spec[name]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        item_kind = LIST_ITEMS.get(name, str)
        if ok and kind is list and item_kind is not None:
            ok = all(isinstance(x, item_kind) and not isinstance(x, bool) for x in value)
        if not ok:
            raise ApiError("InvalidParameterValue", f"`{name}` must be of type {kind.__name__}.")


def check_product(params: dict[str, Any], allowed: set[str]) -> str:
    product = params.get("Product", "mysql")
    if product not in allowed:
        raise ApiError("InvalidParameterValue", f"Product `{product}` is not supported.")
    return product


def missing(name: str) -> ApiError:
    return ApiError("MissingParameter", f"The request is missing `{name}`.")


def invalid(name: str, why: str) -> ApiError:
    return ApiError("InvalidParameterValue", f"`{name}` {why}.")
