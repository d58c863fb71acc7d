from newsletter_cli.cli import cli

if __name__ == "__main__":  # not when a spawned process imports the main module
    cli(prog_name="newsletter")
