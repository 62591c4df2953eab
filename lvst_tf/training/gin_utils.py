"""What a gin configurable will be called with: its own defaults, overlaid with its gin bindings.

The one place that answers "which value will `compute_losses.temporal_mode` have?" without calling the
configurable and without repeating its defaults (they stay in its signature).
"""

from __future__ import annotations

import inspect

import gin.config

import gin


def find_configurable(name):
    """The function or class registered with gin under `name` (e.g. "build_model"), or None."""
    try:
        # gin has no public lookup by name; `lvst_tf.loading` uses the same registry query.
        match = gin.config._REGISTRY.get_match(name)  # noqa: SLF001
    except (KeyError, ValueError):
        return None
    return None if match is None else match.wrapped


def _gin_name(configurable):
    if isinstance(configurable, str):
        return configurable
    return getattr(configurable, "__name__", str(configurable))


def signature_defaults(configurable):
    """`{parameter: default}` of a configurable's signature (parameters without a default omitted)."""
    target = find_configurable(configurable) if isinstance(configurable, str) else configurable
    if target is None:
        raise ValueError(f"gin: no configurable named {configurable!r}.")
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}
    return {
        name: p.default
        for name, p in params.items()
        if p.default is not inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def configured_arguments(configurable):
    """The arguments gin gives `configurable` in the active gin scope.

    Args:
      configurable: a gin-configurable function or class, or its gin name.

    Returns:
      `{parameter: value}`: every parameter with a default, then the gin bindings of the active scope
      over them (a scoped binding overrides the unscoped one, as when gin calls it).
    """
    args = signature_defaults(configurable)
    args.update(gin.get_bindings(_gin_name(configurable)))
    return args
