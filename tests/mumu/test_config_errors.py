"""Class 9 of issue 21: configuration mistakes are one line naming the setting, exit code 2, no traceback.

Every case fails in the preflight, before any Prefect machinery or build starts.
"""

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from mumu.config import ConfigError, load_config


def _invoke(args):
    res = CliRunner().invoke(app, args)
    out = res.output.strip()
    return res.exit_code, out


def _one_line(code, out, *words):
    assert code == 2, out
    assert len(out.splitlines()) == 1, out
    assert "Traceback" not in out and out.startswith("error:")
    for w in words:
        assert w in out, out


@pytest.fixture
def profile(tmp_path):
    def write(text):
        p = tmp_path / f"p{len(list(tmp_path.iterdir()))}.yaml"
        p.write_text("extends: sample\n" + text)
        return str(p)
    return write


def test_unknown_key(profile):
    _one_line(*_invoke(["build", "mucaps", "--profile", profile("bogus_setting: 1\n")]), "bogus_setting")


def test_wrong_type(profile):
    _one_line(*_invoke(["build", "mucaps", "--profile", profile("audio:\n  sample_rate: fast\n")]), "audio.sample_rate")


def test_malformed_set():
    _one_line(*_invoke(["build", "mucaps", "--set", "audio.sample_rate"]), "--set", "KEY=VALUE")


def test_missing_media_folder(profile, tmp_path):
    seg = tmp_path / "seg.csv"
    seg.write_text("YTID,start_seconds,end_seconds,positive_labels\n")
    p = profile(f"mirror:\n  sample: false\n  segments_csv: [{seg}]\n  media_dir: {tmp_path}/no-such-folder\n")
    _one_line(*_invoke(["build", "mucaps", "--profile", p, "--data-root", str(tmp_path / "root")]),
              "mirror.media_dir", "no-such-folder")


def test_segments_path_that_is_a_folder(profile, tmp_path):
    (tmp_path / "segdir").mkdir()
    p = profile(f"mirror:\n  sample: false\n  segments_csv: [{tmp_path}/segdir]\n  media_dir: {tmp_path}\n")
    _one_line(*_invoke(["build", "mucaps", "--profile", p, "--data-root", str(tmp_path / "root")]),
              "mirror.segments_csv", "is a folder")


def test_data_root_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    _one_line(*_invoke(["build", "mucaps", "--data-root", str(tmp_path / "afile")]), "data_root")


@pytest.mark.parametrize("key,value,words", [
    ("edits.pitch_cents", "[100000]", ["edits.pitch_cents", "2400"]),
    ("edits.pitch_cents", "[0]", ["edits.pitch_cents"]),
    ("edits.speed_factors", "[0]", ["edits.speed_factors"]),
    ("edits.speed_factors", "[-1.5]", ["edits.speed_factors"]),
    ("audio.sample_rate", "700000", ["audio.sample_rate", "655350"]),
    ("audio.sample_rate", "0", ["audio.sample_rate"]),
    ("audio.channels", "3", ["audio.channels"]),
])
def test_values_a_tool_cannot_take(key, value, words):
    with pytest.raises(ConfigError):  # first, so that a regression never starts a build below
        load_config("sample", overrides={key: yaml.safe_load(value)})
    _one_line(*_invoke(["build", "mucaps", "--set", f"{key}={value}"]), *words)


def test_the_paper_values_are_accepted():
    cfg = load_config("paper")
    assert cfg.edits.speed_factors == [0.5, 0.7, 1.3, 1.5] and cfg.edits.pitch_cents == [-200, -100, 100, 200]


def test_two_segment_lists_of_one_name(profile, tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "eval.csv").write_text("YTID,start_seconds,end_seconds,positive_labels\n")
    p = profile(f"mirror:\n  sample: false\n  segments_csv: [{tmp_path}/a/eval.csv, {tmp_path}/b/eval.csv]\n"
                f"  media_dir: {tmp_path}\n")
    _one_line(*_invoke(["build", "mucaps", "--profile", p, "--data-root", str(tmp_path / "root")]),
              "mirror.segments_csv", "same file name")
