"""Reading and validating configuration.

Configuration comes from a YAML file (a workflow file's
``config.observability`` or a file whose top level is ``observability``), a
dict, or nothing (defaults plus the environment). Each tier validates its own
section with its own attrs class; the core validates ``pricing``,
``content`` and its own few keys. Every problem becomes one
:class:`ConfigError` line naming the key path, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
import typing
from typing import Any, Callable, Iterable, Mapping, Optional, TypeVar

import attrs

__all__ = [
    "ConfigError",
    "InvalidValue",
    "CoreConfig",
    "ContentConfig",
    "ModelPrice",
    "load_observability",
    "structure_section",
    "in_range",
    "one_of",
    "positive",
    "non_negative",
    "url",
    "env_str",
    "env_float",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """Bad configuration. ``str(err)`` is the complete, user-facing message;
    ``err.problems`` holds one line per problem."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class InvalidValue(ValueError):
    """Raised by the validators below; carries what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name}: {value!r} {allowed}")


# --- validators a tier's config class can use -------------------------------


def in_range(low: float, high: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Allow ``low <= value <= high``."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and not low <= value <= high:
            raise InvalidValue(attribute.name, value, f"is not in [{low:g}, {high:g}]")

    return check


def one_of(*choices: Any) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Allow one of ``choices``."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            hint = _did_you_mean(value, [c for c in choices if isinstance(c, str)])
            raise InvalidValue(attribute.name, value, f"is not one of {allowed}{hint}")

    return check


def positive(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Allow a number > 0."""
    if value is not None and value <= 0:
        raise InvalidValue(attribute.name, value, "must be > 0")


def non_negative(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Allow a number >= 0."""
    if value is not None and value < 0:
        raise InvalidValue(attribute.name, value, "must be >= 0")


def url(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Allow an http(s) URL (or None)."""
    if value is not None and not (
        isinstance(value, str) and value.startswith(("http://", "https://"))
    ):
        raise InvalidValue(attribute.name, value, "is not an http:// or https:// URL")


def env_str(*names: str, default: Optional[str] = None) -> Callable[[], Optional[str]]:
    """A field default read from the first environment variable that is set."""

    def factory() -> Optional[str]:
        for name in names:
            if os.environ.get(name):
                return os.environ[name]
        return default

    return factory


def env_float(name: str, default: float) -> Callable[[], float]:
    """A float field default from an environment variable; bad values fail clearly."""

    def factory() -> float:
        raw = os.environ.get(name)
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"environment {name}: {raw!r} is not a number") from None

    return factory


# --- the core's own sections -------------------------------------------------


@attrs.define(frozen=True)
class ModelPrice:
    """USD per 1M tokens."""

    input: float = attrs.field(validator=non_negative)
    output: float = attrs.field(validator=non_negative)
    cached_input: Optional[float] = attrs.field(default=None, validator=non_negative)


def _check_regexes(attribute: attrs.Attribute, patterns: list[str]) -> None:
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidValue(f"{attribute.name}[{index}]", pattern, f"is not a valid regular expression ({exc})") from None


@attrs.define(frozen=True)
class ContentConfig:
    """What prompts, responses, tool arguments and results the tiers may see."""

    capture: bool = True
    """False: content fields reach no tier (they are None in every record)."""
    redact: list[str] = attrs.field(factory=list, validator=lambda i, a, v: _check_regexes(a, v))
    """Extra regular expressions whose matches are replaced by ``[REDACTED]``."""
    redact_defaults: bool = True
    """Redact API keys, bearer tokens and ``api_key=...`` pairs."""
    max_chars: int = attrs.field(default=100_000, validator=positive)
    """Longer strings are cut to this many characters (with a marker)."""


def _default_strict() -> bool:
    return os.environ.get("TIERTRACE_STRICT", "").lower() in ("1", "true", "yes")


@attrs.define(frozen=True)
class CoreConfig:
    """The core's keys under ``observability``."""

    pricing: dict[str, ModelPrice] = attrs.Factory(dict)
    content: ContentConfig = attrs.Factory(ContentConfig)
    strict: bool = attrs.Factory(_default_strict)
    """Fail instead of warning when a tier cannot be imported or started."""
    shutdown_timeout: float = attrs.field(
        factory=env_float("TIERTRACE_SHUTDOWN_TIMEOUT", 5.0), validator=positive
    )
    """Seconds ``shutdown()`` (and interpreter exit) may take, all tiers together."""
    handle_sigterm: bool = True
    """On SIGTERM, flush every tier before the process ends (only when the
    application has not installed its own SIGTERM handler)."""


CORE_KEYS = tuple(f.name for f in attrs.fields(CoreConfig))

#: Tiers we ship: config key -> distribution, to name what to install.
KNOWN_TIERS = {
    "mlflow": "tiertrace-mlflow",
    "opentelemetry": "tiertrace-otel",
    "prometheus": "tiertrace-prometheus",
}


# --- loading -----------------------------------------------------------------


def load_observability(source: Any) -> tuple[dict[str, Any], str]:
    """Return the ``observability`` mapping and a label for messages.

    ``source`` is a path to a YAML file, a dict, or None (then the file named
    by ``TIERTRACE_CONFIG``, if any). A dict may be the observability mapping
    itself or contain it under ``observability`` or ``config.observability``.
    """
    label = "observability"
    if source is None:
        env_path = os.environ.get("TIERTRACE_CONFIG")
        if not env_path:
            return {}, label
        source = env_path
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise ConfigError(f"config file {str(path)!r}: cannot be read ({exc.strerror or exc})") from None
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r}: is not valid YAML ({exc})") from None
        if data is None:
            return {}, label
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r}: top level is a {type(data).__name__}, expected a mapping")
        if "observability" not in data and "observability" not in (data.get("config") or {}):
            raise ConfigError(
                f"config file {str(path)!r}: has no 'observability' section "
                "(expected top-level 'observability' or 'config.observability')"
            )
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        raise ConfigError(
            f"configure(): source {source!r} is a {type(source).__name__}, "
            "expected a path, a dict or None"
        )
    if isinstance(data.get("config"), Mapping) and "observability" in data["config"]:
        data, label = data["config"]["observability"], "config.observability"
    elif "observability" in data:
        data = data["observability"]
    if data is None:
        return {}, label
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: {data!r} is a {type(data).__name__}, expected a mapping")
    return dict(data), label


# --- strict structuring with cattrs -------------------------------------------

_CONVERTER: Any = None


def _converter() -> Any:
    """A cattrs converter that refuses what plain ``int()``/``bool()`` would coerce."""
    global _CONVERTER
    if _CONVERTER is not None:
        return _CONVERTER
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def strict(expected: type, name: str, accept: tuple[type, ...]) -> Callable[[Any, Any], Any]:
        def hook(value: Any, _type: Any) -> Any:
            if isinstance(value, bool) and expected is not bool:
                raise _TypeMismatch(value, name)
            if not isinstance(value, accept):
                raise _TypeMismatch(value, name)
            return expected(value)

        return hook

    conv.register_structure_hook(bool, strict(bool, "a boolean (true or false)", (bool,)))
    conv.register_structure_hook(int, strict(int, "an integer", (int,)))
    conv.register_structure_hook(float, strict(float, "a number", (int, float)))
    conv.register_structure_hook(str, strict(str, "a string", (str,)))

    # A string is iterable, so plain cattrs would turn "abc" into ["a", "b", "c"].
    from cattrs.errors import IterableValidationError, IterableValidationNote

    def is_list(type_: Any) -> bool:
        return typing.get_origin(type_) is list

    def strict_list(value: Any, type_: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch(value, "a list")
        (item_type,) = typing.get_args(type_) or (Any,)
        items, problems = [], []
        for index, item in enumerate(value):
            try:
                items.append(conv.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [IterableValidationNote(f"@ index {index}", index, item_type)]
                problems.append(exc)
        if problems:
            raise IterableValidationError("While structuring a list", problems, type_)
        return items

    conv.register_structure_hook_func(is_list, strict_list)
    _CONVERTER = conv
    return conv


class _TypeMismatch(TypeError):
    def __init__(self, value: Any, expected: str):
        self.value, self.expected = value, expected
        super().__init__(f"{value!r} is not {expected}")


def structure_section(cls: type[T], data: Any, path: str) -> T:
    """Structure ``data`` into the attrs class ``cls``; raise ConfigError on any problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: {data!r} is a {type(data).__name__}, expected a mapping")
    try:
        return _converter().structure(dict(data), cls)
    except ConfigError:
        raise
    except Exception as exc:  # cattrs groups every problem of the section
        raise ConfigError(_describe(exc, path, data)) from None


def _describe(exc: BaseException, path: str, data: Any) -> list[str]:
    """Turn a (nested) cattrs error into lines 'key.path: value problem'."""
    from cattrs.errors import ForbiddenExtraKeysError

    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [
            f"{path}.{key}: unknown key{_did_you_mean(key, known)}; allowed keys: {', '.join(known)}"
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, BaseExceptionGroup):
        lines: list[str] = []
        for sub in exc.exceptions:
            sub_path, sub_data = path, data
            for note in getattr(sub, "__notes__", []):
                key = getattr(note, "name", None)
                if key is None:
                    key = getattr(note, "index", None)
                if key is not None:
                    sub_path = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                    try:
                        sub_data = data[key]
                    except Exception:
                        sub_data = None
            lines.extend(_describe(sub, sub_path, sub_data))
        return lines
    if isinstance(exc, InvalidValue):
        return [f"{path}.{exc.name}: {exc.value!r} {exc.allowed}"]
    if isinstance(exc, _TypeMismatch):
        return [f"{path}: {exc.value!r} is not {exc.expected}"]
    if len(exc.args) >= 4 and isinstance(exc.args[1], attrs.Attribute):
        # an attrs built-in validator: (message, attribute, allowed, value)
        attribute, value = exc.args[1], exc.args[-1]
        return [f"{path}.{attribute.name}: {value!r} is not allowed ({exc.args[0]})"]
    message = str(exc)
    if " not in literal " in message:  # cattrs' Literal check
        return [f"{path}: {data!r} is not one of {message.split(' not in literal ', 1)[1]}"]
    return [f"{path}: {data!r} is not valid ({type(exc).__name__}: {message})"]


def _did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    return _did_you_mean(word, candidates)
