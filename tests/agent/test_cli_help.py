"""Every command says what it is for and every option has a help line; the main ones show examples."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from agent.cli import build_parser


def walk(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    missing: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    missing.append(f"{' '.join([*path, name])}: no purpose line")
                if not sub.description:
                    missing.append(f"{' '.join([*path, name])} --help: no purpose line")
                missing += walk(sub, [*path, name])
        elif action.help is None and action.dest != "help":
            missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    return missing


def test_every_command_and_option_is_explained() -> None:
    assert walk(build_parser(), ["fieldtriage"]) == []


@pytest.mark.parametrize("command", ["filter", "scan", "agent", "devices", "station", "journal"])
def test_the_main_commands_show_examples(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "examples:" in out


@pytest.mark.parametrize(
    ("argv", "usage"), [(["devices", "watch"], "devices watch"), (["agent", "status"], "agent status")]
)
def test_an_action_has_its_own_help(argv: list[str], usage: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(f"usage: fieldtriage {usage} ")


def test_scan_help_explains_the_modes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "scan", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(f"\n  {mode} " in out for mode in ("auto", "quick", "full"))
