"""Subcommand groups shared by several CLI modules (``kinebridge eval …``, ``kinebridge bench …``)."""

from __future__ import annotations

import argparse

__all__ = ["group"]


def group(sub, name: str, help: str):
    """The subparsers of group ``name`` under ``sub`` (the top-level subparsers): the existing group's,
    or those of a new one. Modules add their subcommands to it in any order."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="what", required=True)
