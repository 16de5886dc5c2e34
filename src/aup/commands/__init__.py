"""Set-up subcommands of ``aup``: ``init``, ``setup``, ``convert``, ``repair``.

Each module has ``add_parser(subparsers)`` and is listed in :data:`aup.cli.EXTRA_COMMANDS`.
"""
