import json
import shutil

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_help_everywhere():
    for args in ([], ["build"], ["build", "mucaps"], ["sample-corpus"], ["validate"], ["config"]):
        res = runner.invoke(app, [*args, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_config_shows_overrides():
    res = runner.invoke(app, ["config", "--profile", "paper", "--set", "corpus.clips=3"])
    assert res.exit_code == 0
    cfg = json.loads(res.output)
    assert cfg["corpus"]["clips"] == 3 and cfg["targets"]["MUCaps"] == 18515
    bad = runner.invoke(app, ["config", "--set", "corpus.nope=1"])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_validate_exit_codes(tmp_path):
    from mumu.config import load_config
    from mumu.stage import ShardResult
    from mumu.store import Store
    from publishing.finalize import finalize_dataset
    from schemas.datasets import MUCAPS
    from tests.helpers import write_parts
    from tests.publishing.test_validate import PROV

    store = Store(str(tmp_path))
    parts = write_parts(store, 1, 5)
    finalize_dataset(store, load_config("sample"), MUCAPS,
                     [ShardResult("records/MUCaps", 0, 5, 5, 0, False, "fp", parts[0], parts[0] + ".x")], [], PROV)
    ds = tmp_path / "datasets" / "MUCaps"
    ok = runner.invoke(app, ["validate", str(ds)])
    assert ok.exit_code == 0 and "valid MUCaps" in ok.output
    shard = next((ds / "data").glob("train-*.parquet"))
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x55
    shard.write_bytes(bytes(data))
    bad = runner.invoke(app, ["validate", str(ds)])
    assert bad.exit_code == 1 and "checksum differs" in bad.output
    shutil.rmtree(ds / "data")
    assert runner.invoke(app, ["validate", str(ds)]).exit_code == 1


def test_build_with_an_unwritable_data_root_is_one_line_and_no_run():
    """Checked before Prefect starts: one line naming the path, exit 2, nothing retried."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cli.main", "build", "mucaps", "--data-root", "/proc/x"],
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert lines == [lines[0]] and "/proc/x" in lines[0] and "cannot be written" in lines[0]
    assert "Traceback" not in out.stderr and "retr" not in (out.stdout + out.stderr).lower()


@pytest.mark.parametrize("args, words", [
    (["--set", "corpus.clipz=3"], ["corpus.clipz"]),
    (["--set", "mirror.segments_csv=[/nonexistent/list.csv]", "--set", "mirror.media_dir=/tmp"],
     ["mirror.segments_csv", "/nonexistent/list.csv", "does not exist"]),
    (["--set", "slakh.root=/nonexistent/slakh"], ["slakh.root", "/nonexistent/slakh"]),
])
def test_build_mistakes_are_one_line_naming_the_setting(args, words, tmp_path):
    res = runner.invoke(app, ["build", "all", "--data-root", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), res.output


def test_the_paper_profile_never_falls_back_to_the_sample_corpus(tmp_path):
    res = runner.invoke(app, ["build", "mucaps", "--profile", "paper", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "mirror.segments_csv is not set" in res.output, res.output
    res = runner.invoke(app, ["build", "muedit", "--profile", "paper", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "looperman.manifest and slakh.root are not set" in res.output, res.output
    assert not (tmp_path / "corpus").exists()  # nothing was rendered


def test_tiny_models_are_written_in_the_real_layouts(tmp_path):
    from annotators.mullama.release import ReleasePaths

    res = runner.invoke(app, ["tiny-models", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert ReleasePaths.of(tmp_path / "mu-llama").shards()  # params.json, shards, tokenizer.model, checkpoint.pth
    for name in ("mistral", "llava", "video-llava", "qwen2-audio", "qwen2-vl", "mert"):
        assert (tmp_path / name / "config.json").exists(), name
    from safetensors import safe_open

    def names(model):
        with safe_open(str(tmp_path / model / "model.safetensors"), "pt") as f:
            return set(f.keys())

    # the weight names of the releases (llava-hf/llava-1.5-7b-hf, Qwen/Qwen2-Audio-7B-Instruct), which vLLM loads
    assert any(k.startswith("vision_tower.vision_model.") for k in names("llava"))
    assert not any(k.startswith("vision_tower.") and ".vision_model." not in k for k in names("llava"))
    assert any(k.startswith("language_model.model.layers.") for k in names("qwen2-audio"))
    assert not any(k.startswith("language_model.model.model.") for k in names("qwen2-audio"))
    again = runner.invoke(app, ["tiny-models", str(tmp_path)])  # made once: a second run keeps them
    assert again.exit_code == 0
