"""One module per CLI command; ``cli.py`` parses the command line and dispatches here."""
