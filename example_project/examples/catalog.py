"""The examples, by the name ``zart_example`` takes, in the order the README shows them."""

from importlib import import_module
from types import ModuleType

NAMES = (
    "onboarding",
    "sleep",
    "parallel",
    "errors",
    "approval",
    "loops",
    "children",
    "recurring",
    "brewery",
)


def load(name: str) -> ModuleType:
    """The example's module: importing it registers its workflows and steps."""
    return import_module("%s.%s" % (__package__, name))


def load_all() -> None:
    for name in NAMES:
        load(name)
