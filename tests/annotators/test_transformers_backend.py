"""The transformers backend with tiny random models on CPU: text, LLaVA images, videos as frames, Video-LLaVA."""

import json

from annotators.base import Request
from annotators.requests import build_annotator
from annotators.transformers_backend import TransformersAnnotator, decode_frames

GEN = {"max_tokens": 12}


def forget(backend: str) -> None:
    """Tear down and drop the process-wide annotators of one backend (the session's vLLM engine stays)."""
    from annotators import base

    with base._LOCK:
        for key, inst in list(base._INSTANCES.items()):
            if inst.backend == backend:
                inst.teardown()
                del base._INSTANCES[key]


def test_frames_are_decoded_evenly(media_dir):
    frames = decode_frames((media_dir / "as-vid0-0.mp4").read_bytes(), 4)
    assert frames.shape == (4, 48, 64, 3) and frames.dtype.name == "uint8"
    assert len({f.tobytes() for f in frames}) == 4  # testsrc moves: four different frames


def test_image_captions_with_tiny_llava(tiny_llava_dir, media_dir):
    ann = build_annotator(TransformersAnnotator, "image_caption", str(tiny_llava_dir), batch_size=2, generation=GEN,
                          options={"min_chars": 1})
    reqs = [Request(f"as-img{i}-0", "image_caption", image_path=str(media_dir / f"as-img{i}-0.jpg")) for i in range(2)]
    reqs.append(Request("as-gone-0", "image_caption", image_path=str(media_dir / "missing.jpg")))
    results = ann.annotate(reqs)
    assert results[0].text and results[1].text
    assert results[2].error_reason == "missing_media"
    rows, failures = ann.rows(results)
    assert [r["kind"] for r in rows] == ["image_caption"] * 2 and len(failures) == 1
    assert rows[0]["annotator"] == "transformers" and rows[0]["model"] == str(tiny_llava_dir)
    from annotators.prompts import prompt

    assert rows[0]["prompt_version"] == prompt("image_caption").version == ann.prompt_version
    assert json.loads(rows[0]["params"])["max_tokens"] == 12
    # the image reached the model: the processor expanded one <image> into the vision tokens
    enc = ann._inputs([ann.builder.build(reqs[0])])
    assert "pixel_values" in enc and int((enc["input_ids"] == ann.config.image_token_id).sum()) == 16
    ann.teardown()


def test_video_as_frames_for_an_image_model(tiny_llava_dir, media_dir):
    ann = build_annotator(TransformersAnnotator, "video_caption", str(tiny_llava_dir), generation=GEN,
                          options={"video_frames": 3, "min_chars": 1})
    req = Request("as-vid0-0", "video_caption", video_path=str(media_dir / "as-vid0-0.mp4"))
    ann.setup()
    enc = ann._inputs([ann.builder.build(req)])
    assert enc["pixel_values"].shape[0] == 3  # three frames, sent as three images in order
    r = ann.annotate([req])[0]
    assert r.text, r.error_detail
    ann.teardown()


def test_video_llava_with_frames_and_its_video_token(tiny_video_llava_dir, media_dir):
    ann = build_annotator(TransformersAnnotator, "video_caption", str(tiny_video_llava_dir), batch_size=2,
                          generation=GEN, options={"video_frames": 4, "min_chars": 1})
    reqs = [Request(f"as-vid{i}-0", "video_caption", video_path=str(media_dir / f"as-vid{i}-0.mp4")) for i in range(2)]
    ann.setup()
    enc = ann._inputs([ann.builder.build(r) for r in reqs])
    assert tuple(enc["pixel_values_videos"].shape) == (2, 4, 3, 32, 32)
    per_video = (enc["input_ids"] == ann.video_token_id).sum(dim=1).tolist()
    assert per_video == [4 * (16 + 1)] * 2  # 16 patches + CLS per frame, as VideoLlavaProcessor counts
    results = ann.annotate(reqs)
    assert all(r.text for r in results), [r.error_detail for r in results]
    ann.teardown()


def test_text_model_without_constrained_decoding_fails_cleanly(tiny_llama_dir):
    # a random model never writes the JSON a response needs: bounded regeneration, then failure rows
    ann = build_annotator(TransformersAnnotator, "text", str(tiny_llama_dir), batch_size=4, generation=GEN,
                          options={"max_attempts": 2})
    reqs = [Request(f"as-t{i}-0", "response", context={"instruction": "Generate music.", "music_caption": "Calm."})
            for i in range(3)]
    results = ann.annotate(reqs)
    assert all(r.text is None and r.error_reason.startswith("invalid_output:") for r in results)
    assert ann.sent == 6 and "after 2 attempt(s)" in results[0].error_detail
    ann.teardown()


def test_cli_annotates_a_folder_and_reruns_from_the_cache(tiny_llava_dir, media_dir, tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from cli.annotate import app

    out = tmp_path / "out"
    args = ["image_caption", "--clips", str(media_dir), "--out", str(out), "--backend", "transformers",
            "--model", str(tiny_llava_dir), "--batch-size", "2", "--option", "min_chars=1", "--set",
            "generation.max_tokens=8"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output[first.output.index("{"):])
    assert summary["annotations"] == 2 and summary["sent"] == 2
    table = pq.read_table(out / "annotations-image_caption.parquet").to_pylist()
    assert [r["clip_id"] for r in table] == ["as-img0-0", "as-img1-0"] and table[0]["annotator"] == "transformers"
    forget("transformers")  # a new process, as far as the annotators know
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.output[second.output.index("{"):])
    assert again["sent"] == 0 and again["cache"]["hits"] == 2
    assert pq.read_table(out / "annotations-image_caption.parquet").to_pylist() == table
    forget("transformers")


def test_cli_rejects_unknown_roles(tmp_path):
    from typer.testing import CliRunner

    from cli.annotate import app

    res = CliRunner().invoke(app, ["lyrics", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown role" in res.output


def test_engines_that_need_a_gpu_take_turns_in_one_process(tiny_llama_dir, tiny_llava_dir, media_dir):
    """Two roles declared ``resources: gpu`` in one worker: only one engine is ever set up; the
    other role's is torn down and set up again (a restart) when its next request comes."""
    from annotators import base
    from mumu.loads import counting

    def text_req(i):
        return Request(f"as-t{i}-0", "response", tags=["Piano"], context={
            "instruction": "Describe it.", "modality": "image", "music_caption": "A piano piece.",
            "visual_caption": "A red sky."})

    text = build_annotator(TransformersAnnotator, "text", str(tiny_llama_dir), generation=GEN, resources="gpu",
                           options={"min_chars": 1, "max_attempts": 1})
    image = build_annotator(TransformersAnnotator, "image_caption", str(tiny_llava_dir), generation=GEN,
                            resources="gpu", options={"min_chars": 1, "max_attempts": 1})
    cpu_only = build_annotator(TransformersAnnotator, "text", str(tiny_llama_dir), generation=GEN, resources="cpu",
                               options={"min_chars": 1, "max_attempts": 1})
    assert text.exclusive and image.exclusive and not cpu_only.exclusive
    try:
        with counting() as events:
            text.annotate([text_req(0)])
            assert base._RESIDENT == [text] and text.model is not None
            image.annotate([Request("as-img0-0", "image_caption", image_path=str(media_dir / "as-img0-0.jpg"))])
            assert base._RESIDENT == [image] and not text._ready and text.model is None  # freed
            text.annotate([text_req(1)])
            assert base._RESIDENT == [text] and not image._ready
            cpu_only.annotate([text_req(2)])  # a CPU engine beside it takes no turn
            assert base._RESIDENT == [text] and cpu_only._ready and text._ready
        assert events == {"image_caption:load": 1, "text:load": 2, "text:restart": 1}
    finally:
        for ann in (text, image, cpu_only):
            ann.teardown()
    assert base._RESIDENT == []
