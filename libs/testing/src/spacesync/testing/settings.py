"""Which environment variables a Spacesync settings class reads: deployment checks (docker-compose.yml, the
Kubernetes manifests) refuse a variable no settings class reads (a typo) and build each container's settings
from its environment (a missing or invalid value fails with its name)."""

from __future__ import annotations

import importlib
import inspect

from pydantic import AliasChoices
from pydantic_settings import BaseSettings


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    """The variables pydantic-settings reads for the class, upper-case: prefix + field name, or the field's
    aliases; nested settings (their default factory reads their own prefix) included."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
        nested = field.annotation
        if inspect.isclass(nested) and issubclass(nested, BaseSettings):
            names |= env_names(nested)
    return names


def settings_of(module_name: str) -> type[BaseSettings]:
    """The settings class of what `python -m <module_name>` runs: a service package's (in its settings module)
    or a module's own, not counting the classes nested in it. AssertionError when that is not exactly one."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__"):
        module = importlib.import_module(f"{module_name}.settings")
    defined = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, BaseSettings) and c.__module__ == module.__name__]
    nested = {field.annotation for c in defined for field in c.model_fields.values()}
    found = [c for c in defined if c not in nested]
    assert len(found) == 1, f"{module.__name__} should define one settings class (others nested in it): {found}"
    return found[0]
