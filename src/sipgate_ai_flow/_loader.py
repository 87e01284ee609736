"""Loading the assistant a command points at: ``module:attr``, ``module``, ``file.py[:attr]``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from .assistant import AiFlowAssistant
from .errors import ConfigurationError

__all__ = ["describe_error", "load_assistant"]


def load_assistant(target: str) -> AiFlowAssistant:
    """Import ``target`` and return the ``AiFlowAssistant`` it names.

    Without ``:attr``, the module's ``assistant`` attribute is used, or else its only
    ``AiFlowAssistant`` instance. Every failure, the app's own import errors included, is a
    ``ConfigurationError`` of one line that says where (no traceback for a command to print).
    """
    module_ref, _, attr = target.partition(":")
    try:
        if module_ref.endswith(".py") and ":" not in target[:2]:
            module = _import_file(Path(module_ref))
        else:
            try:
                module = importlib.import_module(module_ref)
            except ModuleNotFoundError as exc:
                if exc.name is not None and not (
                    module_ref == exc.name or module_ref.startswith(exc.name + ".")
                ):
                    raise  # the app imports something missing: say where, below
                raise ConfigurationError(
                    f"cannot import {module_ref!r}: {exc}. Give a module path "
                    "(pkg.module:attr) importable from the current directory, or a .py file"
                ) from exc
    except ConfigurationError:
        raise
    except Exception as exc:  # the app's own code failed while importing
        raise ConfigurationError(f"cannot load {target}: {_where(exc)}") from exc
    return _pick(module, attr, target)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` (its first line), for one line of a command's output."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """``Type: message (file:line)``: enough to find a mistake in the app without a traceback."""
    if isinstance(exc, SyntaxError):  # its message names the file and line already
        return describe_error(exc)
    # The innermost frame of the app's code, not of the import machinery.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return describe_error(exc) + where


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}")
    path = path.resolve()
    # Let the file import its neighbours, as `python file.py` would.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = f"aiflow_target_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded  # `aiflow serve` checks the target, then uvicorn builds the app
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always have one
        raise ConfigurationError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _pick(module: ModuleType, attr: str, target: str) -> AiFlowAssistant:
    if attr:
        try:
            value: Any = getattr(module, attr)
        except AttributeError:
            raise ConfigurationError(
                f"{target}: {module.__name__} has no attribute {attr!r}"
            ) from None
        if isinstance(value, AiFlowAssistant):
            return value
        inner = getattr(value, "assistant", None)  # an app built by create_app
        if isinstance(inner, AiFlowAssistant):
            return inner
        raise ConfigurationError(f"{target} is a {type(value).__name__}, not an AiFlowAssistant")
    named = getattr(module, "assistant", None)
    if isinstance(named, AiFlowAssistant):
        return named
    found = [v for v in vars(module).values() if isinstance(v, AiFlowAssistant)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigurationError(f"{target} defines no AiFlowAssistant")
    raise ConfigurationError(
        f"{target} defines {len(found)} AiFlowAssistant objects; name one: {target}:NAME"
    )
