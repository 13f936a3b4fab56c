"""The HTTP servers' common base: aiohttp with limits (``server``), the Host allow-list and CSRF
checks (``origin``), listen addresses and the control token rule (``binding``).

Import from the modules: this package imports nothing itself, so the command line's grammar
(``binding``) does not load aiohttp.
"""
