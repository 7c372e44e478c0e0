"""Skills: the skill file (round trip, every malformed entry named), the bundled pour skill, the registry
that resolves task parameters into frames, frame conversions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75
from kinebridge.runtime.skills import registry
from kinebridge.runtime.skills.format import Skill, pose7_from_task_frame, task_frame_from_pose7
from kinebridge.runtime.skills.pour import pouring_skill
from kinebridge.runtime.skills.pour import arm_cup_frame as cup_frame
from kinebridge.runtime.skills.registry import bundled_skill


def test_bundled_skill_matches_its_generator_and_round_trips(tmp_path):
    shipped, fresh = bundled_skill("pour"), pouring_skill()
    assert len(shipped.demos) == len(fresh.demos) == 6
    for a, b in zip(shipped.demos, fresh.demos):
        np.testing.assert_array_equal(a.position, b.position)
        np.testing.assert_array_equal(a.orientation, b.orientation)
    p = tmp_path / "s.npz"
    shipped.save(p)
    back = Skill.load(p)
    assert back.name == "pour" and back.duration == shipped.duration
    np.testing.assert_array_equal(back.frames[3][1].rotation, shipped.frames[3][1].rotation)


def test_malformed_skill_files_are_named(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a kinebridge skill file"):
        Skill.load(bad)
    np.savez(tmp_path / "nometa.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="'meta'"):
        Skill.load(tmp_path / "nometa.npz")
    skill = bundled_skill()
    skill.save(tmp_path / "ok.npz")
    z = dict(np.load(tmp_path / "ok.npz"))
    del z["demo2_position"]
    np.savez(tmp_path / "cut.npz", **z)
    with pytest.raises(ValueError, match="demo2_position"):
        Skill.load(tmp_path / "cut.npz")
    with pytest.raises(ValueError, match="bundled skills"):
        bundled_skill("juggle")


def test_bundled_skill_is_reachable_with_the_tool_pointing_down():
    """Every demonstrated pose is an RM75-B flange pose the IK reaches, tool axis below horizontal."""
    for d in bundled_skill().demos:
        pose = np.concatenate([d.position, d.orientation], axis=1)[::4]
        first = rm75.ik(pose[0], rm75.Q_HOME, rm75.D7_B)
        assert first.ok
        _, ok = rm75.ik_path(pose, first.q, rm75.D7_B, max_step=0.2)
        assert ok.all()
        assert quat.to_matrix(d.orientation)[:, 2, 2].max() < -0.3      # flange z points down (≤ 69° tilt)


def _corrupt(tmp_path, name, **changes):
    z = dict(np.load(tmp_path / "ok.npz"))
    z.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del z[k]
    np.savez(tmp_path / name, **z)
    return tmp_path / name


def test_skill_files_with_bad_entries_are_rejected_by_key(tmp_path):
    bundled_skill().save(tmp_path / "ok.npz")
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        Skill.load(tmp_path / "arr.npy")
    meta = json.loads(str(np.load(tmp_path / "ok.npz")["meta"]))
    cases = {
        "demo1_position": dict(demo1_position=np.zeros((200, 2))),
        "frame0_1_rotation": dict(frame0_1_rotation=2 * np.eye(3)),
        "demo0_orientation": dict(demo0_orientation=np.ones((200, 4))),
        "demo3_t": dict(demo3_t=np.zeros(200)),
        "frame2_0_origin": dict(frame2_0_origin=np.array([0.1, np.nan, 0.2])),
        "n_demos": dict(meta=np.array(json.dumps({**meta, "n_demos": "six"}))),
        "format": dict(meta=np.array(json.dumps({**meta, "format": "other"}))),
        "JSON object": dict(meta=np.array("[1, 2]")),
        "frame5_1_origin": dict(frame5_1_origin=None),
    }
    for problem, change in cases.items():
        with pytest.raises(ValueError, match=problem) as exc:
            Skill.load(_corrupt(tmp_path, "bad.npz", **change))
        assert "Skill.save" in str(exc.value)                        # and says how to fix it


def test_pose7_task_frame_round_trip():
    f = cup_frame(0.4, 0.1, 0.1, 0.3)
    p = pose7_from_task_frame(f)
    assert p.shape == (7,) and p[3] >= 0
    back = task_frame_from_pose7(p)
    np.testing.assert_allclose(back.origin, f.origin, atol=1e-12)
    np.testing.assert_allclose(back.rotation, f.rotation, atol=1e-12)


def test_the_registry_resolves_task_parameters_and_names_what_is_wrong(tmp_path):
    goal = registry.resolve_goal("pour", {"cup": [0.4, 0.1, 0.08, 30]})
    ref = cup_frame(0.4, 0.1, 0.08, np.radians(30))
    np.testing.assert_allclose(goal.origin, ref.origin)
    np.testing.assert_allclose(goal.rotation, ref.rotation)
    for params, match in (({"cup": [0.4, 0.1]}, "4 finite numbers"), ({"cup": [0.4, 0.1, "x", 1]}, "4 finite"),
                          ({"cup": [0.4, 0.1, 0.1, float("nan")]}, "finite"), ({"mug": [1, 2, 3, 4]}, "unknown")):
        with pytest.raises(ValueError, match=match):
            registry.resolve_goal("pour", params)
    with pytest.raises(ValueError, match="unknown skill 'juggle'.*bundled skills"):
        registry.check_skill_spec("juggle")
    with pytest.raises(ValueError, match="no skill file"):
        registry.check_skill_spec(str(tmp_path / "missing.npz"))
    path = tmp_path / "mine.npz"
    bundled_skill().save(path)
    assert registry.load_skill(str(path)).name == "pour"
    with pytest.raises(ValueError, match="takes no task parameters"):     # a skill file: frames only
        registry.resolve_goal(str(path), {"cup": [0.4, 0.1, 0.08, 0]})
    assert registry.skill_names() == ["pour", "pour_mug"] and registry.entry("pour").file.is_file()


def test_bundled_files_are_what_the_registry_writes(tmp_path):
    out = registry.write_bundled_skills(tmp_path)
    assert [p.name for p in out] == ["pour.npz"]
    a, b = Skill.load(out[0]), bundled_skill("pour")
    for x, y in zip(a.demos, b.demos):
        np.testing.assert_array_equal(x.position, y.position)
