"""Azure ML v1's ``azureml.core`` names: ``from azureml.core import Environment`` becomes
``from terrarium.core import Environment``."""

from .. import __version__

# Each name's module is imported when the name is first used (PEP 562).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..environment import Environment
    from ..run import Experiment, Run, RunConfiguration, ScriptRunConfig
    from ..workspace import Workspace

_MODULES = {
    "Environment": "..environment",
    "Experiment": "..run",
    "Run": "..run",
    "RunConfiguration": "..run",
    "ScriptRunConfig": "..run",
    "Workspace": "..workspace",
}

#: The SDK's version (Azure ML's ``azureml.core.VERSION``).
VERSION = __version__


def __getattr__(name: str) -> object:
    """Import the module of a public name on its first use (PEP 562)."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # `from <module> import <name>`, without `importlib` (which imports `warnings`).
    level = len(module) - len(module.lstrip("."))
    value = getattr(__import__(module[level:], globals(), None, [name], level), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])


__all__ = ["VERSION", "Environment", "Experiment", "Run", "RunConfiguration", "ScriptRunConfig", "Workspace"]
