"""The Typer application every command module registers its commands on."""

import typer

app = typer.Typer(
    name="dpbench",
    help="Benchmark parallel decoding of diffusion language models: steps, wall-clock, accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
