"""The runtime TOML: the default parses, and every kind of bad config is refused naming the field."""

from __future__ import annotations

import pytest

from kinebridge.runtime.config import DEFAULT_TOML, ConfigError, load_config, parse_config


def test_default_config_is_valid_and_complete():
    cfg = load_config(None)
    assert cfg.control.rate_hz == 200.0 and cfg.arm.simulate
    assert set(cfg.enabled_nodes()) == {"control", "trajectory", "recorder", "ingress"}
    assert cfg.nodes["control"].critical and not cfg.nodes["trajectory"].critical
    assert cfg.endpoint("control").startswith("ipc://") and cfg.endpoint("control").endswith("/control.sock")
    assert len(cfg.endpoints()) == 5          # four nodes and the supervisor


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


def test_print_config_shows_every_key_and_reads_back():
    """`kinebridge run --print-config` writes every table and key (unset ones commented out) with what it
    does; the text parses back to the same configuration."""
    from kinebridge.runtime.config import RuntimeConfig, render_toml
    cfg = load_config(None)
    text = render_toml(cfg)
    assert parse_config(text) == cfg

    def keys(model, prefix=""):
        for name, f in type(model).model_fields.items():
            v = getattr(model, name)
            if hasattr(type(v), "model_fields"):
                yield from keys(v, f"{prefix}{name}.")
            elif isinstance(v, dict) and v and all(hasattr(type(x), "model_fields") for x in v.values()):
                for k, x in v.items():
                    yield from keys(x, f"{prefix}{name}.{k}.")
            else:
                yield prefix + name
    for key in keys(cfg):
        leaf = key.rsplit(".", 1)[-1]
        assert f"\n{leaf} = " in text or f"\n# {leaf} =" in text, key
    for table in ("[bus]", "[arm.realman]", "[control.realtime]", "[trajectory]", "[recorder]", "[supervisor]",
                  "[ingress]", "[nodes.control]"):
        assert table in text
    assert isinstance(RuntimeConfig.model_fields["supervisor"].description, (str, type(None)))


@pytest.mark.parametrize("change,field", [
    ({"supervisor": {"heartbeat_timeout_s": 0.2}}, "supervisor.heartbeat_timeout_s"),
    ({"trajectory": {"skill": "juggle"}}, "trajectory.skill"),
    ({"trajectory": {"chunk_len": 5}}, "trajectory.chunk_len"),
    ({"control": {"watchdog_s": 0.1}}, "control.watchdog_s"),
    ({"control": {"rate_hz": 50.0}}, "control.rate_hz"),
])
def test_dangerous_but_valid_configs_are_refused_naming_the_field(change, field):
    from kinebridge.runtime.config import ConfigError, RuntimeConfig
    from kinebridge.runtime.daemon.checks import refuse_dangerous
    data = load_config(None).model_dump()
    for table, kv in change.items():
        data[table].update(kv)
    cfg = RuntimeConfig.model_validate(data)          # valid …
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):   # … but refused at start
        refuse_dangerous(cfg)
    refuse_dangerous(load_config(None))              # the default is fine
