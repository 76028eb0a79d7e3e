"""MU-LLaMA from files in the authors' release layout: tiny random weights, the production loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from annotators.base import Request
from annotators.mullama.backend import MULlamaAnnotator
from annotators.mullama.release import SHARD_DIM, ReleaseError, ReleasePaths, load_release, write_tiny_release
from annotators.requests import build_annotator


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_tiny_release(tmp_path_factory.mktemp("mu-llama"))


@pytest.fixture(scope="module")
def mert(tmp_path_factory):
    from model import tiny

    return tiny.ensure(tmp_path_factory.mktemp("tiny-parts"), parts=("mert",))["mert"]


def clips(n: int, seconds: float = 2.0):
    rng = np.random.default_rng(0)
    return [Request(f"as-clip{i}-0", "music_caption", audio=((0.1 * rng.standard_normal(int(24000 * seconds))).astype(np.float32),
                                                          24000)) for i in range(n)]


def captioner(release, mert, batch_size: int, **generation):
    return build_annotator(MULlamaAnnotator, "music_caption", str(release), batch_size=batch_size,
                           options={"mert": str(mert), "min_chars": 1},
                           generation={"max_tokens": 16, "temperature": 0.6, "top_p": 0.8, **generation})


def test_sizes_come_from_the_files(release):
    model, tok = load_release(ReleasePaths.of(release))
    params = json.loads((release / "LLaMA/7B/params.json").read_text())
    a = model.llama.args
    assert (a.dim, a.n_layers, a.n_heads) == (params["dim"], params["n_layers"], params["n_heads"])
    assert a.vocab_size == tok.vocab_size() and a.w_bias and a.w_lora and a.lora_rank == 8
    assert model.shape.query_layer == 2 and model.shape.mert_layers == 3 and model.shape.mert_dim == 32


def test_meta_shards_are_joined_as_one(release, tmp_path):
    """Two model-parallel shards of the same weights load to the same model as the single file."""
    import shutil

    two = tmp_path / "two"
    shutil.copytree(release, two)
    whole = torch.load(two / "LLaMA/7B/consolidated.00.pth", weights_only=True)
    halves: list[dict] = [{}, {}]
    for name, t in whole.items():
        dim = SHARD_DIM.get(name.split(".")[-2] if name.count(".") else name)
        parts = (t, t) if dim is None or t.ndim < 2 else torch.chunk(t, 2, dim=dim)
        for h, part in zip(halves, parts):
            h[name] = part.clone()
    (two / "LLaMA/7B/consolidated.00.pth").unlink()
    for i, h in enumerate(halves):
        torch.save(h, two / f"LLaMA/7B/consolidated.{i:02d}.pth")
    a, _ = load_release(ReleasePaths.of(release))
    b, _ = load_release(ReleasePaths.of(two))
    for (name, x), (_, y) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items())):
        assert torch.equal(x, y), name


def test_a_missing_file_is_one_line_naming_it(release, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(release, broken)
    (broken / "LLaMA/tokenizer.model").unlink()
    with pytest.raises(ReleaseError, match="LLaMA/tokenizer.model is missing"):
        ReleasePaths.of(broken)


def test_batched_captions_equal_one_at_a_time(release, mert):
    """The reference captions one clip at a time; a batch gives every clip the same caption."""
    reqs = clips(4)
    batched = captioner(release, mert, 4)
    single = captioner(release, mert, 1)
    a, b = batched.annotate(reqs), single.annotate(reqs)
    assert [r.text for r in a] == [r.text for r in b]
    assert all(r.text for r in a)
    rows, failures = batched.rows(a)
    assert not failures and {r["annotator"] for r in rows} == {"mullama"}
    from annotators.prompts import prompt

    assert {r["prompt_version"] for r in rows} == {prompt("mullama_caption").version}
    greedy = [captioner(release, mert, n, temperature=0.0).annotate(reqs) for n in (4, 1)]
    assert [r.text for r in greedy[0]] == [r.text for r in greedy[1]]


def test_the_request_is_the_papers_question_in_mullamas_template(release, mert):
    ann = captioner(release, mert, 1)
    chat = ann.builder.build(clips(1)[0])
    text = next(p["text"] for p in chat.messages[0]["content"] if p["type"] == "text")
    assert text.startswith("Below is an instruction that describes a task")
    assert "### Instruction:\nDescribe the music in detail, including aspects such as instruments used, tempo, " \
           "and the mood of the song\n\n### Input:\n" in text and text.endswith("### Response:")
    assert [p["type"] for p in chat.messages[0]["content"]] == ["audio", "text"]


def test_the_roles_own_sampling_wins_over_the_profiles(release, mert):
    from annotators.base import get_annotator
    from mumu.config import AnnotatorSpec, GenerationSpec

    spec = AnnotatorSpec(backend="mullama", model=str(release), options={"mert": str(mert)},
                         generation=GenerationSpec(temperature=0.1, top_p=0.5, max_tokens=8, seed=3))
    ann = get_annotator("music_caption", spec, GenerationSpec())
    try:
        assert ann.params == {"temperature": 0.1, "top_p": 0.5, "max_tokens": 8} and ann.seed == 3
        assert ann.identity()["annotator"] == "mullama" and ann.identity()["mert"] == str(mert)
    finally:
        ann.teardown()
