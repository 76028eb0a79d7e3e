import pytest
from pydantic import ValidationError

from mumu.config import available_profiles, load_config, parse_assignments


def test_profiles_exist():
    assert {"sample", "paper"} <= set(available_profiles())


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


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(ValidationError):
        load_config("sample", {"corpus.clipz": 3})
    with pytest.raises(ValidationError):
        load_config("sample", {"splits.eval_fraction": 1.5})
    with pytest.raises(ValueError, match="unknown profile"):
        load_config("nope")


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
