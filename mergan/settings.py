"""What one config value is: its name, default, one line of meaning and allowed values, and how it reads as text.

The experiment config (``mergan/config.py``) describes its fields this way, and so does every method for
its own knobs (``Method.knobs``, in the method's file), so that validation, ``--help``, ``--set``, YAML,
run names and MLflow params treat a plugin's knob exactly as a built-in field. Nothing here imports
torch or a method: both the config and the methods stand on this module.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

TYPES = ("int", "float", "str", "bool")


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the field and what is allowed."""


def is_number(value: Any) -> bool:
    """An int or float that is not a bool: a value a tracker plots and a table compares."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_text(value: Any) -> str:
    """A value as short text, the same in ``--help``, run names and report labels: None (or NaN, a param a
    run lacks) -> 'empty', True -> 'true', 0.003 -> '3e-3', 0.01 -> '0.01', 10.0 -> '10', 1e9 -> '1e9'."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, numbers.Real) or isinstance(value, numbers.Integral):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "empty"
    if value.is_integer() and abs(value) < 1e4:
        return str(int(value))
    plain = f"{value:.3g}"
    mantissa, _, exponent = f"{value:.2e}".partition("e")
    short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return short if len(short) < len(plain) else plain


@dataclass(frozen=True)
class Allowed:
    """The values a config field accepts: validation refuses others, ``mergan train --help`` shows it.

    An empty field (None) is accepted here; whether a field may be empty is its type's business.
    """

    choices: tuple[str, ...] = ()
    above: float | None = None  # the value must be > above
    at_least: float | None = None  # the value must be >= at_least
    below: float | None = None  # the value must be < below

    def describe(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        if self.below is None:
            return f"> {self.above:g}" if self.above is not None else f">= {self.at_least:g}"
        opening, low = ("(", self.above) if self.above is not None else ("[", self.at_least)
        return f"in {opening}{low:g}, {self.below:g})"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return True
        if self.choices:
            return value in self.choices
        return ((self.above is None or value > self.above) and (self.at_least is None or value >= self.at_least)
                and (self.below is None or value < self.below))


POSITIVE = Allowed(above=0)
NON_NEGATIVE = Allowed(at_least=0)
ADAM_BETA = Allowed(at_least=0, below=1)


@dataclass(frozen=True)
class Knob:
    """One setting: ``Knob("lambda_ra", 1e-3, "weight of the replay-alignment loss", NON_NEGATIVE)``.

    ``type`` is one of int, float, str, bool (default: the default's type; give it when the default is
    None); ``optional``: the value may be empty (None), which a None default implies.
    """

    name: str
    default: Any
    meaning: str
    allowed: Allowed | None = None
    type: str = ""
    optional: bool = False

    def __post_init__(self) -> None:
        kind = self.type or ("" if self.default is None else type(self.default).__name__)
        if kind not in TYPES:
            raise TypeError(f"knob {self.name!r}: type {kind or 'unknown'!r}; allowed: {', '.join(TYPES)} "
                            f"(give type= when the default is None)")
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "optional", self.optional or self.default is None)

    @property
    def type_text(self) -> str:
        """``"int"``, or ``"int | None"`` for a knob that may be empty."""
        return f"{self.type} | None" if self.optional else self.type

    def coerce(self, value: Any, where: str) -> Any:
        """``value`` (text from a flag or YAML, or a number) as this knob's type; ``where`` names it in errors."""
        empty_text = isinstance(value, str) and value.lower() in ("none", "null", "")
        if value is None or (empty_text and self.optional):
            if self.optional:
                return None
            raise ConfigError(f"{where} may not be empty")
        try:
            if self.type == "bool":
                if isinstance(value, str):
                    if value.lower() in ("1", "true", "yes", "on"):
                        return True
                    if value.lower() in ("0", "false", "no", "off"):
                        return False
                    raise ValueError(value)
                return bool(value)
            if self.type == "int":
                number = float(value) if isinstance(value, str) else value  # "1e3" is 1000
                if isinstance(number, float) and not number.is_integer():  # 1.5, inf and nan are not counts
                    raise ValueError(value)
                return int(number)
            if self.type == "float":
                return float(value)
            return str(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {value!r} is not a valid {self.type_text}") from None

    def check(self, value: Any, where: str) -> None:
        """Refuse a value this knob does not allow (a ConfigError naming ``where`` and what is allowed)."""
        finite = not isinstance(value, float) or math.isfinite(value)
        if finite and (self.allowed is None or self.allowed.accepts(value)):
            return
        what = self.allowed.describe() if self.allowed else "a finite number"
        if self.optional:
            what += ", or empty"
        if not finite:
            problem = f"is not a finite number; allowed: {what}"
        else:
            problem = f"is not allowed; allowed: {what}" if self.allowed.choices else f"must be {what}"
        raise ConfigError(f"{where}: {value!r} {problem}")

    def help_text(self) -> str:
        """Meaning and allowed values, as ``--help`` shows them (the default is added by the caller)."""
        parts = [self.meaning]
        if self.allowed is not None:
            parts.append(f"allowed: {self.allowed.describe()}")
        elif self.type == "bool":
            parts.append("allowed: true, false")
        return "; ".join(p for p in parts if p)
