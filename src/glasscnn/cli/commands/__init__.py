"""One module per sub-command; each defines ``register(subparsers)``.

``register`` adds its parser and sets ``func`` (a callable taking the parsed
``argparse.Namespace`` and returning an exit code) as the parser's default.
"""
