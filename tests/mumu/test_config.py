import pytest

from mumu.config import ConfigError, available_profiles, load_config, parse_assignments


def test_profiles_exist():
    assert {"sample", "paper", "paper-mini"} <= set(available_profiles())


def test_paper_profile_carries_the_papers_numbers():
    cfg = load_config("paper")
    assert cfg.audio.clip_seconds == 10.0
    assert (cfg.targets.MUCaps, cfg.targets.MUImage, cfg.targets.MUVideo) == (18515, 14520, 14504)
    assert cfg.edits.speed_factors == [0.5, 0.7, 1.3, 1.5]
    assert sorted(cfg.edits.pitch_cents) == [-200, -100, 100, 200]
    assert (cfg.eval_sizes.MUCaps, cfg.eval_sizes.MUImage, cfg.eval_sizes.MUVideo, cfg.eval_sizes.MUEdit) == (4000, 2500, 2500, 2000)
    assert (cfg.generation.temperature, cfg.generation.top_p) == (0.6, 0.8)
    assert "Mistral-7B-Instruct" in cfg.annotators.text.model
    assert "llava" in cfg.annotators.image_caption.model.lower()


def test_overrides_dotted_and_nested():
    cfg = load_config("sample", {"corpus.clips": 3, "shards": {"items_per_shard": 5}}, data_root="/tmp/x")
    assert cfg.corpus.clips == 3 and cfg.shards.items_per_shard == 5 and cfg.data_root == "/tmp/x"
    assert cfg.shards.max_shard_bytes == 500 * 2**20  # untouched siblings keep their values


def test_unknown_keys_and_bad_values_are_one_line_that_names_the_setting():
    with pytest.raises(ConfigError) as err:
        load_config("sample", {"corpus.clipz": 3})
    assert "corpus.clipz" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"splits\.eval_fraction.*got 1\.5"):
        load_config("sample", {"splits.eval_fraction": 1.5})
    with pytest.raises(ValueError, match="unknown profile"):
        load_config("nope")


def test_relative_paths_are_absolute_against_one_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUMU_DATA_HOME", raising=False)
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    cfg = load_config("sample", {"mirror.segments_csv": ["lists/a.csv"], "slakh.root": "s3://bucket/slakh"}, "out")
    assert cfg.data_root == str(tmp_path / "out") and cfg.mirror.segments_csv == [str(tmp_path / "lists/a.csv")]
    assert cfg.slakh.root == "s3://bucket/slakh"  # URLs stay as they are
    assert load_config("sample", data_root="memory://x").data_root == "memory://x"
    # a flow run on a Prefect worker runs in a temporary folder: relative paths go to one fixed place
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config("sample", data_root="data/sample").data_root == str(tmp_path / "home/mumu/data/sample")
    monkeypatch.setenv("MUMU_DATA_HOME", str(tmp_path / "srv"))
    assert load_config("sample", data_root="data/sample").data_root == str(tmp_path / "srv/data/sample")


def test_parse_assignments_reads_yaml_values():
    assert parse_assignments(["a.b=3", "c=[x, y]", "d=true"]) == {"a.b": 3, "c": ["x", "y"], "d": True}
    with pytest.raises(ValueError):
        parse_assignments(["novalue"])


def test_fingerprint_ignores_where_and_how_but_not_what():
    a = load_config("sample", data_root="/a")
    b = load_config("sample", {"runner.max_workers": 7}, data_root="/b")
    c = load_config("sample", {"audio.sample_rate": 16000})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_profile_from_a_yaml_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("corpus: {clips: 2}\n")
    cfg = load_config(str(p))
    assert cfg.corpus.clips == 2 and cfg.profile == "mine"


def test_paper_mini_is_the_paper_profile_with_models_sizes_and_mirror_changed():
    paper, mini = load_config("paper").model_dump(), load_config("paper-mini").model_dump()
    changed = {k for k in paper if paper[k] != mini[k]}
    assert changed <= {"profile", "data_root", "mirror", "corpus", "shards", "targets", "eval_sizes", "splits", "pools",
                       "annotators", "runner", "caption_gate"}
    assert mini["mirror"] == {**paper["mirror"], "sample": True}
    assert mini["splits"] == {**paper["splits"], "eval_fraction": mini["splits"]["eval_fraction"]}  # a size only
    assert mini["runner"] == {**paper["runner"], "max_workers": mini["runner"]["max_workers"]}
    for role, spec in mini["annotators"].items():  # same backends, options and sampling; tiny models
        assert spec["backend"] == paper["annotators"][role]["backend"] and spec["model"].startswith("tiny:")
        assert spec["generation"] == paper["annotators"][role]["generation"]
    assert mini["generation"] == paper["generation"] and mini["edits"] == paper["edits"]
    # the caption gate: the same threshold, retries and batches; only its CLAP is a tiny one
    assert mini["caption_gate"] == {**paper["caption_gate"], "model": "tiny:clap"}
    assert paper["caption_gate"]["model"] == "laion/larger_clap_music"
    assert load_config("sample").caption_gate.model is None  # off in the sample profile


def test_extends_merges_sections_and_refuses_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text("extends: sample\ncorpus: {clips: 3}\nseed: 4\n")
    (tmp_path / "child.yaml").write_text("extends: base\ncorpus: {seed: 9}\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert (cfg.corpus.clips, cfg.corpus.seed, cfg.seed, cfg.profile) == (3, 9, 4, "child")
    assert cfg.annotators.music_caption.backend == "features"  # from sample, two levels up
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))
