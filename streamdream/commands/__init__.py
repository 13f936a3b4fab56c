"""The top floor: one module per command, each with ``command(args, stop) -> exit code``.

``cli.py`` parses the command line and imports the module of the command that runs.
"""
