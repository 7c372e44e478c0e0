"""The runtime TOML: the default parses, and every kind of bad config is refused naming the field."""

from __future__ import annotations

import pytest

from kinebridge.runtime.config import DEFAULT_TOML, ConfigError, load_config, parse_config


def test_default_config_is_valid_and_complete():
    cfg = load_config(None)
    assert cfg.control.rate_hz == 200.0 and cfg.arm.simulate
    assert set(cfg.enabled_nodes()) == {"control", "trajectory", "recorder"}
    assert cfg.nodes["control"].critical and not cfg.nodes["trajectory"].critical
    assert cfg.endpoint("control").startswith("ipc://") and cfg.endpoint("control").endswith("/control.sock")
    assert len(cfg.endpoints()) == 4          # three nodes and the supervisor


@pytest.mark.parametrize("text,field", [
    ("[control]\nrate_hz = 1000.0\n", "control.rate_hz"),
    ("[control]\nrate_hz = 5.0\n", "control.rate_hz"),
    ("[control]\nrat_hz = 200.0\n", "control.rat_hz"),
    ("[arm.realman]\nport = 70000\n", "arm.realman.port"),
    ("[arm.realman]\nip = 1\n", "arm.realman.ip"),
    ("[trajectory]\nchunk_len = 1\n", "trajectory.chunk_len"),
    ("[supervisor]\nheartbeat_hz = 0\n", "supervisor.heartbeat_hz"),
    ("[nodes.vision]\ncritical = false\n", "unknown kind"),
    ("[nodes.control]\ncritical = true\nendpoint = \"tcp://10.0.0.5:5800\"\n", "bus.curve_keys"),
    ("[nodes.control]\nendpoint = \"ipc:///tmp/a.sock\"\n[nodes.recorder]\nendpoint = \"ipc:///tmp/a.sock\"\n",
     "also used by"),
    ("[nodes.control]\n[nodes.control2]\nkind = \"control\"\n", "only one control node"),
    ("[control]\nworkspace_min = [0.0, 0.0, 0.0]\nworkspace_max = [0.1, -0.1, 0.1]\n", "workspace_max"),
    ("[nodes.control]\nendpoint = \"udp://1.2.3.4:5\"\n", "unsupported transport"),
])
def test_bad_config_names_the_field(text, field):
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "test.toml")
    assert field in str(exc.value) and "test.toml" in str(exc.value)


def test_remote_endpoint_is_accepted_with_keys(tmp_path):
    cfg = parse_config(f'[bus]\ncurve_keys = "{tmp_path}"\n[nodes.trajectory]\nendpoint = "tcp://10.0.0.5:5800"\n')
    assert cfg.endpoint("trajectory") == "tcp://10.0.0.5:5800"


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[control\nrate_hz = 1", "x.toml")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_default_text_round_trips_through_a_file(tmp_path):
    p = tmp_path / "runtime.toml"
    p.write_text(DEFAULT_TOML)
    assert load_config(p) == load_config(None)


def test_reading_a_config_does_not_load_numba():
    """Nodes that never touch the arm (the recorder) start without Numba: the config models live in
    pydantic-only modules, and the control loop's defaults agree with the kinematics kernel."""
    import subprocess
    import sys

    code = ("import sys, kinebridge.runtime.node, kinebridge.runtime.recording.node\n"
            "from kinebridge.runtime.config import load_config\n"
            "load_config(None)\n"
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from kinebridge.drivers.arm.config import ARM_MODEL_NAMES, ArmConfig
    from kinebridge.drivers.arm.model import ARM_MODELS, arm_model
    from kinebridge.drivers.realman.sim.options import MODEL_NAMES
    from kinebridge.kernels import rm75
    assert arm_model(ArmConfig().model).d7 == rm75.D7_B          # the default arm is the RM75-B
    assert set(ARM_MODEL_NAMES) == set(ARM_MODELS) == set(MODEL_NAMES)   # the light copies of the model names agree
