"""One-line messages for what Hydra refuses while composing a config: an option that is not in its group
(``loss=hubber``) or a key that is not in the config (``trainer.epoch=5``), with the closest valid names.

Hydra prints such errors as a multi-line block and exits 1; the harness prints one line and exits 2, as for every
other config that cannot work (``harness.__main__`` and the sweep's pre-validation in ``harness.callbacks``).
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, Iterable

WHERE_TO_LIST = {
    "loss": "python -m harness --help, or python -c 'import losses; print(losses.available())'",
}


def _closest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def missing_option(group: str, option: str, options: Iterable[str]) -> str:
    """``loss=hubber is not an option of group 'loss'; did you mean 'huber'? (all: ...)``."""
    where = WHERE_TO_LIST.get(group, "python -m harness --help")
    return f"{group}={option} is not an option of group '{group}'; {_closest(option, options)}(all options: {where})"


def missing_key(key: str, siblings: Iterable[str]) -> str:
    """``trainer.epoch is not a key of the config; did you mean 'trainer.epochs'? ...``."""
    parent, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.6)
    hint = f"did you mean '{parent + '.' if parent else ''}{close[0]}'? " if close else ""
    return f"{key} is not a key of the config; {hint}(add a new key with +{key}=..., see every key with python -m harness --cfg job)"


def describe(err: BaseException, keys_of: Callable[[str], list[str] | None] | None = None) -> str | None:
    """The one-line message for a Hydra composition error, or ``None`` if ``err`` is not one.
    ``keys_of(parent)`` lists the keys under a dotted parent (for suggestions), when it can."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        return missing_option(group, option, err.options or [])
    text = str(err)
    found = re.search(r"Could not override '([^']+)'", text)
    cause = str(err.__cause__ or "")
    if found and "not in struct" in cause:
        key = found.group(1)
        parent = key.rpartition(".")[0]
        siblings = (keys_of(parent) if keys_of else None) or []
        return missing_key(key, siblings)
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {text.splitlines()[0]} (Hydra's override grammar: key=value, group=option, +key=value)"
    if isinstance(err, HydraException):
        lines = [line.strip() for line in text.split("Config search path")[0].splitlines() if line.strip()]
        return "; ".join(lines or [type(err).__name__]) + (f" ({cause.splitlines()[0]})" if cause else "")
    return None
