"""The README's Python tour runs as written, and its commands name real sub-commands."""

from __future__ import annotations

import re
from pathlib import Path

from glasscnn.cli.main import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_tour_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})


def test_commands_in_readme_exist():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    named = set(re.findall(r"`glasscnn ([a-z]+)", README.read_text()))
    assert named
    assert named <= commands, named - commands
