"""The perception command line: its groups are shared (data/train/export/eval), each subcommand's help."""

import argparse

import pytest

from kinebridge.runtime.cli.groups import group
from kinebridge.runtime.cli.main import build_parser


def test_groups_are_shared_between_modules():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    sub.add_parser("run")
    ev = sub.add_parser("eval")                                # created by another module, its own way
    ev.add_subparsers(dest="what").add_parser("lasa")
    group(sub, "data", "data").add_parser("kine")              # the tokenizer's
    group(sub, "data", "data").add_parser("keypoints")         # perception's: the same group
    group(sub, "eval", "evaluations").add_parser("keypoints")
    assert set(group(sub, "data", "data").choices) == {"kine", "keypoints"}
    assert p.parse_args(["eval", "keypoints"]).what == "keypoints" and p.parse_args(["eval", "lasa"]).what == "lasa"
    assert p.parse_args(["data", "kine"]).what == "kine"


@pytest.mark.parametrize("argv", [["data", "keypoints"], ["train", "keypoints"], ["export", "keypoints"],
                                  ["eval", "keypoints"], ["bench", "perception"]])
def test_every_perception_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: kinebridge " + " ".join(argv) in capsys.readouterr().out


def test_eval_still_has_lasa_and_json_flag():
    p = build_parser()
    assert p.parse_args(["eval", "lasa"]).what == "lasa"
    a = p.parse_args(["eval", "keypoints", "--scenes", "2", "--seed", "3", "--json"])
    assert (a.scenes, a.seed, a.json) == (2, 3, True)
