"""Every setting can be given as a flag, booleans both ways (the README's settings table)."""

from __future__ import annotations

import argparse

import pytest

from elasticsan_snapshotter.settings import Settings


def parsed(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    return Settings.load(parser.parse_args(list(argv)), env={})


def test_a_boolean_that_defaults_to_true_can_be_turned_off_by_flag() -> None:
    assert parsed().leader_election is True
    assert parsed("--no-leader-election").leader_election is False


def test_a_boolean_flag_wins_over_the_environment_both_ways() -> None:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(["--no-standalone"])
    assert Settings.load(args, env={"ESS_STANDALONE": "true"}).standalone is False
    args = parser.parse_args(["--standalone"])
    assert Settings.load(args, env={"ESS_STANDALONE": "false"}).standalone is True


def test_a_boolean_left_out_falls_back_to_the_environment() -> None:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    assert Settings.load(parser.parse_args([]), env={"ESS_LEADER_ELECTION": "false"}).leader_election is False


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["--managed-sans", "/a, /b"], "managed_sans", ("/a", "/b")),
        (["--write-rate", "2.5"], "write_rate", 2.5),
        (["--write-burst", "3"], "write_burst", 3),
        (["--log-format", "text"], "log_format", "text"),
    ],
)
def test_other_flags_are_converted_to_their_types(argv: list[str], field: str, value: object) -> None:
    assert getattr(parsed(*argv), field) == value
