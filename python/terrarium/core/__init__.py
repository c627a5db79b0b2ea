"""Azure ML v1's ``azureml.core`` names: ``from azureml.core import Environment`` becomes
``from terrarium.core import Environment``."""

from .. import __getattr__ as _package_name
from .. import __version__

# Each name's module is imported when the name is first used (PEP 562).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..environment import Environment
    from ..run import Experiment, Run, RunConfiguration, ScriptRunConfig
    from ..workspace import Workspace

#: The names this module gives, all of them the package's own (which imports each one's module
#: on its first use).
_NAMES = ("Environment", "Experiment", "Run", "RunConfiguration", "ScriptRunConfig", "Workspace")

#: The SDK's version (Azure ML's ``azureml.core.VERSION``).
VERSION = __version__


def __getattr__(name: str) -> object:
    """A public name, from the package on its first use (PEP 562)."""
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _package_name(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])


__all__ = ["VERSION", "Environment", "Experiment", "Run", "RunConfiguration", "ScriptRunConfig", "Workspace"]
