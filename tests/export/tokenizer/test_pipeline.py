"""The whole KineVLA part-one pipeline on a tiny configuration: a Kine data set generated in the world,
the bi-level RVQ-VAE and its baselines trained and exported, the runtime's decoder (both back ends) decoding
the exported tokenizer exactly as torch does, the evaluation's JSON, and the replay's tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vector_quantize_pytorch")
pytest.importorskip("onnxruntime")
pytest.importorskip("mujoco")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    import os
    os.environ.setdefault("MUJOCO_GL", "egl")
    from kinebridge.bench.kine.generate import KineConfig, generate
    from kinebridge.export.tokenizer.train import TrainConfig, train_all
    root = tmp_path_factory.mktemp("kine")
    data, tok = root / "data", root / "tok"
    man = generate(KineConfig(episodes=7, seed=3, out=str(data), workers=1, coarse_share=0.3, group_size=2,
                              holdout_share=0.5, tasks=("place", "push", "drawer"), image_hz=2.0, image_size=(48, 32)),
                   progress=False, log=lambda s: None)
    cfg = TrainConfig(levels=2, codebook=16, dim=8, hidden=32, steps=40, batch=64, progress=False, exporter="torchscript",
                      fast_train=200)
    summary = train_all(data, tok, cfg, log=lambda s: None)
    return data, tok, man, summary


def test_the_data_set_has_both_splits_language_labels_images_and_a_manifest(pipeline):
    from kinebridge.export.tokenizer.data import KineDataset
    data, _, man, _ = pipeline
    assert man["format"] == "kinebridge-kine-1" and len(man["episodes"]) == 7
    assert {e["split"] for e in man["episodes"]} == {"coarse", "kine"}
    assert man["timing"]["episodes_per_min"] > 0
    ds = KineDataset(data)
    e = ds.episodes("kine")[0]
    meta = ds.meta(e["id"])
    assert meta["instruction"] != meta["coarse_instruction"] and meta["reasoning"]["fine"].startswith("1. Robot")
    assert meta["predicates"] and set(meta["predicates"]) == set(meta["predicate_attributes"])
    a = ds.arrays(e["id"])
    T = a["q"].shape[0]
    assert a["action_q"].shape == (T, 7) and a["keypoints"].shape[0] == T and a["grip"].shape == (T,)
    assert a["image_scene"].shape[1:] == (32, 48, 3) and a["image_wrist"].shape == a["image_scene"].shape
    c = ds.chunks("kine", None)
    assert c.delta.shape[1:] == (5, 7) and len(c) == sum(x["n_steps"] for x in ds.episodes("kine"))
    # the same seed gives the same episodes
    from kinebridge.bench.kine.generate import KineConfig, _jobs
    cfg = KineConfig(episodes=7, seed=3, coarse_share=0.3, group_size=2, holdout_share=0.5,
                     tasks=("place", "push", "drawer"))
    assert [(j["task"], j["split"], j["ids"]) for j in _jobs(cfg)] == \
        [(j["task"], j["split"], j["ids"]) for j in _jobs(cfg)]


def test_training_writes_both_stages_every_tokenizer_and_a_figure(pipeline):
    _, tok, _, summary = pipeline
    for name in ("bi-level-rvq", "rvq", "bins-256", "fast"):
        assert (tok / name / "manifest.json").is_file(), name
    bl = tok / "bi-level-rvq"
    assert (bl / "stage1.pt").is_file() and (bl / "stage2.pt").is_file()
    log = json.loads((bl / "training_log.json").read_text())
    assert {x["stage"].split(" (")[0] for x in log} == {"stage I", "stage II"}
    assert all("usage" in x and "perplexity" in x for x in log)
    m = json.loads((bl / "manifest.json").read_text())
    assert m["model"]["levels"] == [2, 2] and m["tokens"]["length"] == 2 + 2 + 3
    assert m["parity"]["onnx_vs_torch_max_abs"] < 1e-4 and m["parity"]["compiled_vs_torch_max_abs"] < 1e-4
    assert (tok / "reconstructions.png").stat().st_size > 10_000
    # stage II froze E_l: the goal-level codebooks are stage I's
    from kinebridge.export.tokenizer.train import load_rvq
    s1, s2 = load_rvq(bl / "stage1.pt"), load_rvq(bl / "stage2.pt")
    assert torch.equal(s1.q_l.codebooks, s2.q_l.codebooks)
    assert not torch.equal(s1.decoder.l1.weight, s2.decoder.l1.weight)          # the shared decoder was fine-tuned


@pytest.mark.parametrize("backend", ["compiled", "onnx"])
def test_the_runtime_decoder_decodes_the_exported_tokenizer_as_torch_does(pipeline, backend):
    from kinebridge.export.tokenizer.export import sequences
    from kinebridge.export.tokenizer.train import load_rvq
    from kinebridge.runtime.policy.decoder import TokenDecoder
    _, tok, _, _ = pipeline
    d = tok / "bi-level-rvq"
    dec = TokenDecoder(d, backend)
    model = load_rvq(d / "stage2.pt")
    codes = np.random.default_rng(0).integers(0, 16, size=(20, 4))
    ref = model.decode(torch.as_tensor(codes)).numpy()
    seqs = sequences(codes, dec.layout)
    q = np.linspace(-0.3, 0.3, 7)
    for s, r in zip(seqs, ref):
        rows = dec.decode(s, q)
        assert np.allclose(rows[1:], q + dec.scale * r, atol=1e-5)


def test_the_evaluation_reports_every_tokenizer(pipeline):
    from kinebridge.bench.kine.tokenizer_eval import evaluate
    data, tok, _, _ = pipeline
    res = evaluate(data, tok, world_episodes=1, log=lambda s: None)
    for name in ("bi-level-rvq", "rvq", "bins-256", "fast"):
        r = res["tokenizers"][name]
        for k in ("l1", "l1_ee", "predicates_preserved", "goal_success", "tokens_per_chunk", "decode_us_median",
                  "decode_us_p99"):
            assert k in r, (name, k)
    assert res["tokenizers"]["bi-level-rvq"]["tokens_per_chunk"] == 4
    assert "onnx_us_median" in res["tokenizers"]["rvq"] and "seams" in res["tokenizers"]["bi-level-rvq"]
    assert "coarse_split" in res and "comparison" in res
    json.dumps(res)


def test_the_replay_reads_the_data_sets_tokens(pipeline):
    from kinebridge.runtime.policy.decoder import TokenDecoder
    from kinebridge.runtime.policy.replay import enable_in_config, load_replay
    from kinebridge.runtime.config import RuntimeConfig, load_config
    data, tok, _, _ = pipeline
    r = load_replay(data, tok / "bi-level-rvq")
    dec = TokenDecoder(tok / "bi-level-rvq")
    assert r.tokenizer == dec.id and r.codes.shape[1] == dec.layout["length"] and len(r.codes) == len(r.q)
    rows = dec.decode(r.codes[0], r.q[0])          # the data set's tokens are valid sequences
    assert np.array_equal(rows[0], r.q[0])
    cfg = load_config(None).model_dump()
    cfg["policy"]["tokenizer"] = str(tok / "bi-level-rvq")
    cfg = RuntimeConfig.model_validate(enable_in_config(cfg, "replay-tokens", str(data)))
    kinds = {n: s.kind for n, s in cfg.nodes.items() if s.enabled}
    assert "decoder" in kinds.values() and "policy" in kinds.values() and "trajectory" not in kinds.values()
    assert np.allclose(np.radians(cfg.arm.sim_initial_deg), r.q[0])
    with pytest.raises(ValueError, match="replay-tokens"):
        enable_in_config(load_config(None).model_dump(), "imitate", str(data))


def test_eval_tokenizer_on_the_command_line_writes_its_json(pipeline, tmp_path, capsys):
    from kinebridge.runtime.cli.main import main
    data, tok, _, _ = pipeline
    out = tmp_path / "eval.json"
    assert main(["eval", "tokenizer", "--data", str(data), "--tokenizers", str(tok), "--which", "bi-level-rvq,bins-256",
                 "--world-episodes", "0", "--json", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["tokenizers"]) == {"bi-level-rvq", "bins-256"} and res["tokenizers"]["bins-256"]["l1"] > 0
    assert json.loads(capsys.readouterr().out)["tokenizers"].keys() == res["tokenizers"].keys()
