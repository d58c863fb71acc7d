from newsletter_cli.cli import cli

cli(prog_name="newsletter")
