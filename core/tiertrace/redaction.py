"""Where content is made safe before any tier sees it.

Every prompt, message, response, tool argument and result, input, tag and
error message goes through :meth:`ContentPolicy.clean` in the tracer: it is
turned into a JSON-safe value, long strings are cut, and secrets are replaced
by ``[REDACTED]``. With ``content.capture: false`` content fields are dropped
altogether (tags and error messages are still redacted, not dropped).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from tiertrace.records import to_jsonable

__all__ = ["ContentPolicy", "DEFAULT_PATTERNS", "REDACTED"]

REDACTED = "[REDACTED]"

#: Secrets redacted by default. Each is (name, regex); a regex with a group
#: named ``keep`` keeps that part (the key of a ``key=value`` pair).
DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_\-]{16,}"),
    ("openai_key", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}\b"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("bearer_token", r"(?P<keep>\b[Bb]earer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    (
        "secret_pair",
        r"(?P<keep>(?i:\b(?:api[_-]?key|apikey|x-api-key|secret(?:[_-]?key)?|aws_secret_access_key"
        r"|access[_-]?token|auth[_-]?token|token|password|passwd)\b)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\s\"',;&}]{4,}",
    ),
)


# Mapping keys whose value is a secret whatever it looks like: {"api_key": "..."}.
_SECRET_KEY = re.compile(
    r"(?i)^(?:x-)?(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|password|passwd"
    r"|token|access[_-]?token|auth[_-]?token|refresh[_-]?token|authorization|aws_secret_access_key)$"
)


class ContentPolicy:
    """Redacts secrets and bounds the size of recorded content."""

    def __init__(
        self,
        capture: bool = True,
        extra_patterns: Iterable[str] = (),
        use_defaults: bool = True,
        max_chars: int = 100_000,
    ):
        self.capture = capture
        self.max_chars = max_chars
        patterns = [p for _, p in DEFAULT_PATTERNS] if use_defaults else []
        patterns.extend(f"(?:{p})" for p in extra_patterns)
        # One alternation: a prompt without secrets costs a single regex pass.
        self._regex: Optional[re.Pattern[str]] = (
            re.compile("|".join(f"(?:{p})" for p in _renumber_keep(patterns))) if patterns else None
        )

    def _replace(self, match: re.Match[str]) -> str:
        for name, value in match.groupdict().items():
            if value is not None and name.startswith("keep"):
                return value + REDACTED
        return REDACTED

    def redact_text(self, text: str) -> str:
        """Cut ``text`` to ``max_chars`` and replace every secret in it."""
        if len(text) > self.max_chars:
            text = f"{text[: self.max_chars]}...[truncated {len(text) - self.max_chars} chars]"
        if self._regex is None:
            return text
        return self._regex.sub(self._replace, text)

    def clean(self, value: Any) -> Any:
        """A JSON-safe, size-bounded, redacted copy of any value."""
        if value is None or isinstance(value, (bool, int, float)):
            return to_jsonable(value)
        if isinstance(value, str):
            return self.redact_text(value)
        return self._walk(to_jsonable(value))

    def content(self, value: Any) -> Any:
        """Like :meth:`clean`, but None when content capture is off."""
        if not self.capture or value is None:
            return None
        return self.clean(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {
                self.redact_text(k): REDACTED
                if _SECRET_KEY.match(k) and v not in (None, "")
                else self._walk(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value


def _renumber_keep(patterns: list[str]) -> list[str]:
    """Give each pattern's ``keep`` group a unique name so they can share one regex."""
    return [p.replace("(?P<keep>", f"(?P<keep{i}>") for i, p in enumerate(patterns)]
