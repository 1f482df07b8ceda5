"""The command line's one error path: a *user error* prints one line, ``error: <message>``, on
stderr and exits with code 2, never a traceback.

A user error is a click usage error (a missing option, an unknown command) or an exception of a
type the project raises for bad input only, whose message names the field, argument or file
(`user_errors`: `ConfigError` and its `SpecError`, `StoreError`, `RunAlreadyDone`, `SweepLocked`,
`PlanError`, `CorpusNotFoundError`, `CorpusFetchError`). Checks turn what they find into one of
these types where they know it is the user's input (`training.preflight` raises `ConfigError`), so
nothing here guesses from a message. A full disk (`DISK_FULL`) is one line naming the file it stopped
at. Any other exception is a bug, of lrtransfer or of a user's
objective, and keeps its traceback. Warnings of lrtransfer's own categories (e.g. a binary corpus
file) print one ``warning:`` line.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import warnings

import typer
from typer import _click as click  # typer 0.29 (pinned) ships its own click: its exceptions are these
from typer.core import TyperArgument, TyperCommand, TyperGroup

EXIT_USER_ERROR = 2
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the machine's state, not a bug: one line naming the file


def user_errors() -> tuple[type[Exception], ...]:
    """The exception types that mean bad input (see the module doc); imported when one is raised."""
    from lrtransfer.config import ConfigError
    from lrtransfer.data import CorpusFetchError, CorpusNotFoundError
    from lrtransfer.records.store import RunAlreadyDone, StoreError
    from lrtransfer.sweep.lock import SweepLocked
    from lrtransfer.sweep.plan import PlanError

    return ConfigError, StoreError, RunAlreadyDone, SweepLocked, PlanError, CorpusNotFoundError, CorpusFetchError


def one_line(message: str) -> str:
    """A possibly multi-line message as one line: ``title:`` lines run on, other lines join with ``;``."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    out = lines[0] if lines else ""
    for line in lines[1:]:
        out += (" " if out.endswith(":") else "; ") + line
    return out


@contextlib.contextmanager
def _one_line_errors():
    """Turn a user error raised inside into ``error: …`` on stderr and exit code 2."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # shows the help
    except click.exceptions.ClickException as err:
        ctx = getattr(err, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        _fail(err.format_message() + hint)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        _fail(f"{err.filename or 'a file'}: {err.strerror}; free some space and run the command again "
              "(what was written before is kept, and a run resumes from its checkpoint)")
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise  # a bug: its traceback is what the user must report
        _fail(str(err))


def _fail(message: str) -> None:
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


class OneLineErrorGroup(TyperGroup):
    """A command group whose user errors, in parsing or in its commands, are one line (module doc)."""

    def make_context(self, *args, **kwargs) -> typer.Context:
        with _one_line_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context):
        with _one_line_errors():
            return super().invoke(ctx)


class Command(TyperCommand):
    """Usage lines in click's notation: a required argument as ``SPEC``, an optional one as ``[ARGS]...``."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """lrtransfer's own warnings as one ``warning:`` line; any other warning as Python shows it."""
    if category.__module__.startswith("lrtransfer"):
        print(f"warning: {one_line(str(message))}", file=file or sys.stderr)
    else:
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOW_WARNING = warnings.showwarning
