"""The `lrtransfer` command line: one sub-command per job, each a thin shell over the Python API."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def theory(out: Path = typer.Option(Path("runs/theory"), help="Folder for the PNG figures and CSV numbers.")) -> None:
    """Write the theory figures (paper Figures 7 and 15) as PNG, with their numbers as CSV."""
    from lrtransfer.plots.theory import write_theory_figures

    for path in write_theory_figures(out):
        typer.echo(path)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
