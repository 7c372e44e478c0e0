"""``kinebridge world`` as the lead's CLI will call it: add_arguments + run."""

from __future__ import annotations

import argparse
import json

import cv2

from kinebridge.drivers.world import cli


def _run(argv, capsys):
    args = cli.add_arguments(argparse.ArgumentParser()).parse_args(argv)
    rc = cli.run(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_lists_objects_and_keypoints_and_writes_a_snapshot(tmp_path, capsys):
    png = tmp_path / "scene.png"
    rc, out, _ = _run(["--seed", "5", "--ambiguous", "--json", "--snapshot", str(png), "--size", "320x240"], capsys)
    assert rc == 0
    info = json.loads(out)
    mugs = [o for o in info["objects"] if o["kind"] == "mug"]
    assert len(mugs) >= 3 and info["target"] == "mug0" and info["water"] == 120
    for m in mugs:
        assert set(m["keypoints"]) == {"K_i", "K_p1", "K_p2", "K_b"}
        assert abs(m["keypoints"]["K_p2"][2]) < 0.005              # on the table top (z = 0)
    img = cv2.imread(str(png))
    assert img.shape == (240, 320, 3) and img.std() > 10           # a picture, not a blank


def test_text_output_and_errors(capsys):
    rc, out, _ = _run(["--seed", "1", "--mugs", "2", "--distractors", "0"], capsys)
    assert rc == 0 and "mug1" in out and "K_p1" in out and "base frame, m" in out
    rc, _, err = _run(["--seed", "-3"], capsys)
    assert rc == 2 and "seed" in err and err.count("\n") == 1
    rc, _, err = _run(["--size", "big"], capsys)
    assert rc == 2 and "--size" in err
