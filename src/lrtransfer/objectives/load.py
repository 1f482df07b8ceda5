"""User objectives named by module path ('package.module:function'): load one, name one, and make
the folders they live in importable here and in worker processes.

Kept apart from `lrtransfer.objectives.trial` (which runs trials) so that the sweep spec and the study can name
and check an objective without importing the training code.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lrtransfer.strict import ConfigError


class ObjectiveError(ConfigError):
    """An objective cannot be imported or is not a function of the trial; the message says why."""


def load_objective(ref: str) -> Callable[..., None]:
    """The function ``'package.module:function'`` names; an `ObjectiveError` saying why if it cannot
    be imported (its module is missing, does not compile or raises at import) or is not a callable
    of one argument (the caller adds where the name came from)."""
    module, _, name = ref.partition(":")
    if module.startswith(".") or "/" in module or os.sep in module:
        raise ObjectiveError(f"{ref!r} is a path, not a module name: write 'module:function' and put the file's "
                             "folder beside the spec or in the working directory")
    try:
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as err:
        raise ObjectiveError(f"cannot import {ref!r} ({type(err).__name__}: {err}); the spec's folder and the "
                             "working directory are importable, or install the package") from None
    except Exception as err:  # the user's module does not compile or raises at import: theirs to fix
        raise ObjectiveError(f"cannot import {ref!r}: its module raised {type(err).__name__}: {err}") from None
    if not callable(fn) or not _takes_one_argument(fn):
        raise ObjectiveError(f"{ref!r} is not a callable of one argument (the trial)")
    return fn


def _takes_one_argument(fn: Callable) -> bool:
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): give it the benefit of the doubt
        return True
    return True


def importable(*folders: str | Path) -> None:
    """Make ``folders`` importable here and in worker processes started from here (PYTHONPATH)."""
    paths = [str(Path(f).resolve()) for f in folders]
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, *current]))


def objective_ref(fn: Callable) -> str:
    """``'module:qualname'`` of a function, the main script's module by its file name."""
    module = fn.__module__
    if module == "__main__":
        main = sys.modules["__main__"]
        if not getattr(main, "__file__", None):
            raise ValueError("objective: define it in a module or script file; functions of an interactive "
                             "session cannot be imported by the study's worker processes")
        importable(Path(main.__file__).parent)
        module = Path(main.__file__).stem
        sys.modules.setdefault(module, main)  # importing it by name here must not run the script a second time
    if "<locals>" in fn.__qualname__:
        raise ValueError(f"objective: {fn.__qualname__} is a local function; define it at module level")
    return f"{module}:{fn.__qualname__}"
