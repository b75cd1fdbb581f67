"""Where tiers are found, configured, started, and where hooks are called.

Discovery: every entry point in the group ``tiertrace.tiers``. Its name is the
tier's config key, its object the tier class. ``TIERTRACE_LOAD_PLUGINS``
(a comma-separated allow-list, as llm's ``LLM_LOAD_PLUGINS``) limits which
are loaded; set it to an empty string to load none.

Isolation: pluggy stops a hook call at the first implementation that raises,
so :class:`HookRelay` calls each implementation itself, in its own
try/except. A failure is counted in :class:`Health` per plugin and hook and
warned about once; the other implementations still run.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any, Callable, Iterable, Optional

import attrs
import pluggy

from tiertrace import hookspecs
from tiertrace.config import (
    CORE_KEYS,
    KNOWN_TIERS,
    ConfigError,
    CoreConfig,
    did_you_mean,
    structure_section,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "TierInfo",
    "Health",
    "HookRelay",
    "TierLoadError",
    "PluginErrorWarning",
    "TierFailedWarning",
    "discover",
    "load_tiers",
]

ENTRY_POINT_GROUP = "tiertrace.tiers"
ALLOW_LIST_ENV = "TIERTRACE_LOAD_PLUGINS"


class TierLoadError(RuntimeError):
    """Strict mode: a tier could not be imported or started."""


class TierFailedWarning(UserWarning):
    """A tier could not be imported or started; everything else still runs."""


class PluginErrorWarning(UserWarning):
    """A hook implementation raised (reported once per plugin and hook)."""


@attrs.define(eq=False)
class TierInfo:
    """What the core knows about one tier (or in-process plugin)."""

    name: str
    distribution: Optional[str] = None
    version: Optional[str] = None
    state: str = "active"
    """``active``, ``disabled`` or ``failed``."""
    reason: Optional[str] = None
    hooks: list[str] = attrs.Factory(list)
    tier_class: Any = None
    instance: Any = None
    config: Any = None


class Health:
    """The core's own counters: hook errors and records dropped by tiers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plugin_errors: dict[tuple[str, str], int] = {}
        """(plugin, hook) -> number of exceptions raised."""
        self.dropped: dict[tuple[str, str], int] = {}
        """(tier, reason) -> number of records dropped."""
        self.last_errors: dict[tuple[str, str], str] = {}

    def record_plugin_error(self, plugin: str, hook: str, exc: BaseException) -> None:
        key = (plugin, hook)
        with self._lock:
            first = key not in self.plugin_errors
            self.plugin_errors[key] = self.plugin_errors.get(key, 0) + 1
            self.last_errors[key] = f"{type(exc).__name__}: {_safe_str(exc)}"
        if first:
            warnings.warn(
                f"tiertrace: plugin {plugin!r} raised in {hook}: {type(exc).__name__}: "
                f"{_safe_str(exc)} (ignored; further errors of this plugin in this hook "
                "are only counted)",
                PluginErrorWarning,
                stacklevel=2,
            )

    def record_dropped(self, tier: str, count: int = 1, reason: str = "queue_full") -> None:
        """Tiers call this for every record they could not deliver."""
        key = (tier, reason)
        with self._lock:
            self.dropped[key] = self.dropped.get(key, 0) + count

    def total_plugin_errors(self, plugin: Optional[str] = None) -> int:
        with self._lock:
            return sum(n for (p, _), n in self.plugin_errors.items() if plugin in (None, p))

    def total_dropped(self, tier: Optional[str] = None) -> int:
        with self._lock:
            return sum(n for (t, _), n in self.dropped.items() if tier in (None, t))


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<unprintable>"


# --- calling hooks ------------------------------------------------------------

_Impl = tuple[str, Callable[..., Any], bool]  # (plugin name, function, takes the argument)


class HookRelay:
    """Per hook, a tuple of implementations to call in isolation.

    Rebuilt when plugins are registered or removed, so that firing a hook
    with no listener costs one attribute lookup and a truth test.
    """

    def __init__(self, pm: pluggy.PluginManager, health: Health):
        self._pm = pm
        self._health = health
        self._impls: dict[str, tuple[_Impl, ...]] = {}
        self.refresh()

    def refresh(self) -> None:
        impls: dict[str, tuple[_Impl, ...]] = {}
        for name in dir(self._pm.hook):
            caller = getattr(self._pm.hook, name, None)
            if not isinstance(caller, pluggy.HookCaller):
                continue
            found = []
            # get_hookimpls() is in call order reversed (pluggy calls LIFO).
            for impl in reversed(caller.get_hookimpls()):
                if impl.hookwrapper or impl.wrapper:
                    continue  # wrappers make no sense without return values
                found.append((impl.plugin_name, impl.function, bool(impl.argnames)))
            impls[name] = tuple(found)
            if name in hookspecs.RECORD_HOOKS or name in hookspecs.LIFECYCLE_HOOKS:
                setattr(self, name, impls[name])
        self._impls = impls

    def impls(self, hook: str) -> tuple[_Impl, ...]:
        return self._impls.get(hook, ())

    def fire(self, hook: str, impls: tuple[_Impl, ...], value: Any) -> None:
        """Call every implementation with ``value``; none can stop the others."""
        for plugin, function, takes_arg in impls:
            try:
                if takes_arg:
                    function(value)
                else:
                    function()
            except Exception as exc:  # a tier must never break the workflow
                self._health.record_plugin_error(plugin, hook, exc)

    def fire_bounded(self, hook: str, value: Any, timeout: float) -> list[str]:
        """Run each implementation in its own daemon thread; wait until ``timeout``.

        Used for flush and shutdown, so that one slow tier cannot hold up the
        others or the process exit. Returns the plugins that overran.
        """
        deadline = time.monotonic() + timeout
        threads = []
        for plugin, function, takes_arg in self.impls(hook):
            thread = threading.Thread(
                target=self.fire,
                args=(hook, ((plugin, function, takes_arg),), value),
                name=f"tiertrace-{hook}-{plugin}",
                daemon=True,
            )
            thread.start()
            threads.append((plugin, thread))
        late = []
        for plugin, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                late.append(plugin)
        return late


# --- discovery -------------------------------------------------------------------


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _allow_list() -> Optional[set[str]]:
    raw = os.environ.get(ALLOW_LIST_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def hooks_of(obj: Any) -> list[str]:
    """Names of the hooks that an object or class implements (by marker)."""
    names = []
    for attr in dir(obj):
        try:
            value = getattr(obj, attr)
        except Exception:
            continue
        if getattr(value, f"{hookspecs.PROJECT_NAME}_impl", None) is not None:
            names.append(attr)
    return sorted(names)


def _unknown_hooks(obj: Any, pm: pluggy.PluginManager) -> list[str]:
    """Hook names an object implements that no spec declares (typos), unless optional."""
    problems = []
    for attr in hooks_of(obj):
        opts = getattr(getattr(obj, attr), f"{hookspecs.PROJECT_NAME}_impl")
        caller = getattr(pm.hook, attr, None)
        if (caller is None or caller.spec is None) and not opts.get("optionalhook"):
            known = [h for h in dir(pm.hook) if not h.startswith("_")]
            problems.append(f"implements unknown hook {attr!r}{did_you_mean(attr, known)}")
    return problems


def discover() -> list[TierInfo]:
    """Every installed tier, imported but not configured or started."""
    allow = _allow_list()
    infos = []
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        info = TierInfo(
            name=ep.name,
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
        )
        infos.append(info)
        if allow is not None and ep.name not in allow:
            info.state, info.reason = "disabled", f"not in {ALLOW_LIST_ENV}"
            continue
        try:
            info.tier_class = ep.load()
        except Exception as exc:  # one broken tier must not stop the others
            info.state, info.reason = "failed", f"import failed: {type(exc).__name__}: {_safe_str(exc)}"
            continue
        info.hooks = [h for h in hooks_of(info.tier_class) if h != "register_commands"]
    return infos


def split_config(observability: dict[str, Any], label: str, infos: Iterable[TierInfo]) -> tuple[CoreConfig, dict[str, Any]]:
    """Validate the core's keys and check every other key names an installed tier."""
    installed = {info.name for info in infos}
    core_part = {k: v for k, v in observability.items() if k in CORE_KEYS}
    problems = []
    for key in observability:
        if key in CORE_KEYS or key in installed:
            continue
        if key in KNOWN_TIERS:
            problems.append(
                f"{label}.{key}: the tier {key!r} is not installed; "
                f"install it with: pip install {KNOWN_TIERS[key]}"
            )
        else:
            allowed = sorted(set(CORE_KEYS) | installed)
            problems.append(
                f"{label}.{key}: unknown key{did_you_mean(key, allowed)}; allowed here: "
                f"{', '.join(allowed)} (a third-party tier's key appears once its "
                "distribution is installed)"
            )
    try:
        core = structure_section(CoreConfig, core_part, label)
    except ConfigError as err:
        problems.extend(err.problems)
        core = None
    if problems:
        raise ConfigError(problems)
    assert core is not None
    return core, {k: v for k, v in observability.items() if k in installed}


def configure_tiers(infos: list[TierInfo], sections: dict[str, Any], label: str) -> None:
    """Validate every tier's section (all of them, before any tier starts)."""
    problems = []
    for info in infos:
        section = sections.get(info.name)
        if section is None:
            section = {}
        elif not isinstance(section, dict):
            problems.append(f"{label}.{info.name}: {section!r} is a {type(section).__name__}, expected a mapping")
            continue
        section = dict(section)
        enabled = section.pop("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{label}.{info.name}.enabled: {enabled!r} is not a boolean (true or false)")
            continue
        if info.state != "active":
            continue  # not imported: its section cannot be checked
        config_class = getattr(info.tier_class, "config_class", None)
        if config_class is None:
            if section:
                keys = ", ".join(sorted(section))
                problems.append(f"{label}.{info.name}: this tier takes no settings besides 'enabled' (got {keys})")
        else:
            try:  # checked even when disabled: bad configuration is always an error
                info.config = structure_section(config_class, section, f"{label}.{info.name}")
            except ConfigError as err:
                problems.extend(err.problems)
        if not enabled:
            info.state, info.reason = "disabled", "enabled: false"
    if problems:
        raise ConfigError(problems)


def start_tier(info: TierInfo, pm: pluggy.PluginManager) -> None:
    """Instantiate and register one configured tier; report it when it fails."""
    if info.state != "active":
        return
    try:
        config_class = getattr(info.tier_class, "config_class", None)
        instance = info.tier_class(info.config) if config_class is not None else info.tier_class()
        problems = _unknown_hooks(instance, pm)
        if problems:
            raise TypeError("; ".join(problems))
        pm.register(instance, name=info.name)
        info.instance = instance
    except Exception as exc:
        info.state, info.reason = "failed", f"start failed: {type(exc).__name__}: {_safe_str(exc)}"


def report_failures(infos: Iterable[TierInfo], strict: bool) -> None:
    failed = [info for info in infos if info.state == "failed"]
    if not failed:
        return
    lines = [f"tier {info.name!r} ({info.distribution}): {info.reason}" for info in failed]
    if strict:
        raise TierLoadError("tiertrace strict mode: " + "; ".join(lines))
    for line in lines:
        warnings.warn(f"tiertrace: {line}; continuing without it", TierFailedWarning, stacklevel=3)


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def load_tiers(
    observability: dict[str, Any], label: str, pm: pluggy.PluginManager, strict: Optional[bool] = None
) -> tuple[CoreConfig, list[TierInfo]]:
    """Discover, validate, start and register the tiers. Bad config raises ConfigError."""
    infos = discover()
    core, sections = split_config(observability, label, infos)
    strict = core.strict if strict is None else strict
    import_failed = [i for i in infos if i.state == "failed"]
    report_failures(import_failed, strict)  # strict: raise before anything starts
    configure_tiers(infos, sections, label)
    for info in infos:
        start_tier(info, pm)
    start_failed = [i for i in infos if i.state == "failed" and i not in import_failed]
    if strict and start_failed:
        # Stop the tiers that did start (their threads, servers) before raising.
        HookRelay(pm, Health()).fire_bounded("on_shutdown", core.shutdown_timeout, core.shutdown_timeout)
    report_failures(start_failed, strict)
    return core, infos
