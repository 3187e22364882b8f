"""Configs as text and back: YAML files, the nested or dotted dicts that checkpoints keep, ``--set`` items."""

from __future__ import annotations

import os
from typing import Any

import yaml

from mergan.config import FIELDS, ExperimentConfig, is_module_key, method_registry
from mergan.settings import ConfigError


def parse_assignment(item: str, example: str) -> tuple[str, str]:
    """A ``--set`` item ``"FIELD=VALUE"`` -> (FIELD, VALUE as written); a ConfigError showing ``example`` otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: write FIELD=VALUE, e.g. --set {example}")
    return key.strip(), value



def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config: flat (``lr_g: 1e-4``), dotted, or nested by section."""
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; name a YAML file of config fields") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not text"
        raise ConfigError(f"config file {path} cannot be read ({reason}); name a YAML file of config fields") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in ExperimentConfig().sections():
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def save_yaml(config: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write ``config`` as YAML nested by section (what :func:`load_yaml` and ``--config`` read)."""
    with open(path, "w") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Inverse of ``ExperimentConfig.to_dict`` (nested) or ``flat`` (dotted), e.g. from a checkpoint.

    The method module is loaded first. A knob that no method here declares is left out when none of the
    run's own methods declares it (a knob of an installed plugin the run did not use, uninstalled since)."""
    config = ExperimentConfig(preset=values.get("preset", "small"))
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub_key}": sub_value for sub_key, sub_value in value.items()})
        elif key != "preset":
            flat[key] = value
    for key in sorted(flat, key=lambda k: not is_module_key(k)):
        try:
            config.set(key, flat[key])
        except ConfigError:
            if not _foreign_knob(config, key):
                raise
    return config


def _foreign_knob(config: ExperimentConfig, key: str) -> bool:
    """True for ``method.<knob>`` that neither this process's methods nor the config's own methods know."""
    section, _, name = key.replace("-", "_").rpartition(".")
    if section != "method" or name in FIELDS or name in config.method.knobs():
        return False
    own = config.methods  # raises for a method that is not available here: that is the error to show
    registry = method_registry()
    return all(name not in {k.name for k in registry.method_class(m, config.method.modules).knobs} for m in own)

