"""The features image and video captioners: measured facts on known pictures and videos, captions, failures."""

import json
import string
import subprocess

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from annotators.base import Request, get_annotator
from annotators.image_measure import ImageFacts, colourfulness, measure_image
from annotators.prompts import prompt
from annotators.video_decode import VideoError
from annotators.video_measure import VideoFacts, measure_video
from annotators.visual_features import FeaturesImageCaptioner, FeaturesVideoCaptioner
from annotators.visual_words import describe_image, describe_video, image_words, video_words
from mumu.config import load_config
from sources.sample_corpus import ClipSpec, make_video, picture


def solid(rgb, size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, tuple(rgb))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True)


def spec(index: int, pic: str, mode: str = "major") -> ClipSpec:
    return ClipSpec(index=index, ytid=f"vid{index:08d}xx", start_s=0, tempo_bpm=100, tonic=0, mode=mode,
                    lead="piano", chords="harp", bass=True, drums=False, gain=0.5, picture=pic)


# --- images ---------------------------------------------------------------------------------------

def test_pure_red_is_warm_vivid_and_red():
    f = measure_image(solid((230, 20, 20)))
    assert f.warmth > 0.9 and f.dominant_colours == ("red",) and f.colour_shares["red"] > 0.99
    assert f.colourfulness > 60 and f.edge_density == 0.0
    words = image_words(f)
    assert words["palette"] == "warm" and words["vividness"] in ("colourful", "vivid")
    text = describe_image(f, "as-red-0")
    assert "red" in text and "warm" in text


def test_blue_is_cool_and_brightness_follows_the_pixels():
    blue = measure_image(solid((30, 60, 200)))
    assert blue.warmth < -0.9 and blue.dominant_colours == ("blue",) and image_words(blue)["palette"] == "cool"
    white, black = measure_image(solid((250, 250, 250))), measure_image(solid((5, 5, 5)))
    assert white.brightness > 0.95 and black.brightness < 0.05
    assert image_words(white)["lighting"] == "very bright" and image_words(black)["lighting"] == "very dark"
    assert white.dominant_colours == ("white",) and black.dominant_colours == ("black",)
    assert "mostly_dark" in black.cues and "mostly_white" in white.cues
    assert "mostly_bright" in measure_image(solid((255, 240, 40))).cues  # bright, but yellow, not white
    for grey in (white, black):
        assert grey.colourfulness < 1 and grey.chromatic_share == 0.0 and image_words(grey)["palette"] == "neutral"


def test_colourfulness_is_hasler_suesstrunk():
    rng = np.random.default_rng(0)
    arr = rng.random((32, 32, 3))
    r, g, b = (arr[..., k] * 255 for k in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert colourfulness(arr) == pytest.approx(expected)
    assert colourfulness(np.repeat(arr[..., :1], 3, axis=2)) == pytest.approx(0.0, abs=1e-9)


def test_noise_has_high_edge_density_and_flat_images_none():
    rng = np.random.default_rng(1)
    noise = measure_image((rng.random((200, 200)) * 255).astype(np.uint8))
    flat = measure_image(solid((120, 160, 90), (200, 200)))
    assert noise.edge_density > 0.2 and noise.texture > 0.2 and noise.flatness < 0.2
    assert flat.edge_density == 0.0 and flat.flatness == 1.0
    assert "grainy" in image_words(noise)["texture"] and image_words(flat)["texture"] == "smooth and uncluttered"
    assert image_words(noise)["energy"] in ("lively", "intense") and image_words(flat)["energy"] == "calm"


def test_measurements_do_not_depend_on_size_or_input_type():
    rng = np.random.default_rng(2)
    small = Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).resize((256, 256), Image.Resampling.NEAREST)
    big = small.resize((1024, 1024), Image.Resampling.NEAREST)
    a, b = measure_image(small), measure_image(big)
    assert abs(a.brightness - b.brightness) < 0.01 and abs(a.colourfulness - b.colourfulness) < 2
    assert abs(a.edge_density - b.edge_density) < 0.02
    assert measure_image(np.asarray(small)) == a  # an array measures the same as the image
    assert measure_image(np.asarray(small, dtype=np.float32) / 255.0).dominant_colours == a.dominant_colours


def test_sky_cue_only_when_the_top_is_smooth_blue():
    arr = np.zeros((200, 200, 3), np.uint8)
    arr[:80] = (110, 170, 235)  # a smooth light blue band
    rng = np.random.default_rng(3)
    arr[80:] = (rng.random((120, 200, 1)) * np.array([60, 160, 60])).astype(np.uint8)  # textured green below
    assert "blue_top" in measure_image(arr).cues
    arr[:80] = (rng.random((80, 200, 1)) * np.array([110, 170, 235])).astype(np.uint8)  # blue but grainy
    assert not {"blue_top", "deep_blue_top"} & set(measure_image(arr).cues)
    assert not {"blue_top", "deep_blue_top"} & set(measure_image(solid((200, 40, 40), (200, 200))).cues)


def test_real_photographs():
    import skimage.data

    hubble = measure_image(skimage.data.hubble_deep_field())
    assert "bright_specks" in hubble.cues and hubble.brightness < 0.15 and hubble.dominant_colours[0] == "black"
    rocket = measure_image(skimage.data.rocket())  # a launch pad at dusk under a deep blue sky
    assert "deep_blue_top" in rocket.cues and rocket.warmth < -0.5
    cat = measure_image(skimage.data.chelsea())  # a tabby cat: orange-brown fur, fine detail
    assert cat.warmth > 0.8 and set(cat.dominant_colours) >= {"orange", "brown"} and cat.edge_density > 0.14
    coffee = measure_image(skimage.data.coffee())
    assert coffee.warmth > 0.8 and "vertical_gradient" not in coffee.cues
    astronaut = measure_image(skimage.data.astronaut())
    assert astronaut.contrast > 0.2 and not {"bright_specks", "greyscale", "flat_colour_areas"} & set(astronaut.cues)


def test_generated_sample_pictures():
    """The sample corpus' generated stills: a warm gradient for major keys, a deep blue one for minor."""
    warm = measure_image(picture(spec(18, "generated", "major"), 256))
    cool = measure_image(picture(spec(11, "generated", "minor"), 256))
    assert warm.warmth > 0.3 and cool.warmth < -0.3
    assert "flat_colour_areas" in warm.cues and "flat_colour_areas" in cool.cues
    assert "vertical_gradient" in warm.cues and warm.top_colour == "orange"
    assert "deep_blue_top" in cool.cues and warm.brightness > cool.brightness


def _all_variants(template_name: str, words: dict) -> list[str]:
    from annotators.visual_words import _tidy

    return [_tidy(line.format(**words)) for line in prompt(template_name).lines()]


def _well_formed(text: str) -> None:
    assert "{" not in text and "}" not in text and "  " not in text and " ." not in text and " ," not in text
    assert text[0].isupper() and text.endswith(".") and ".." not in text
    for bad in (" a a", " a an ", " an a ", " a e", " a i", " a o", " a u", " an c", "a very a"):
        assert bad not in text, (bad, text)


def test_every_image_template_reads_well_for_varied_facts():
    import skimage.data

    sources = [solid((230, 20, 20)), solid((5, 5, 5)), solid((250, 250, 250)), skimage.data.hubble_deep_field(),
               skimage.data.rocket(), picture(spec(18, "generated"), 128), picture(spec(11, "generated", "minor"), 128),
               (np.random.default_rng(4).random((100, 100, 3)) * 255).astype(np.uint8)]
    fields = {f for line in prompt("features_image_caption").lines() for _, f, _, _ in string.Formatter().parse(line) if f}
    for src in sources:
        facts = measure_image(src)
        words = image_words(facts)
        assert fields <= set(words)
        for text in _all_variants("features_image_caption", words):
            _well_formed(text)
            assert words["colours"] in text


def test_image_captions_are_deterministic_and_vary_by_clip():
    facts = measure_image(solid((40, 120, 200)))
    assert describe_image(facts, "as-x-0") == describe_image(facts, "as-x-0")
    assert len({describe_image(facts, f"as-{i}-0") for i in range(40)}) >= 4


def test_image_annotator_results_and_failures(tmp_path):
    good = tmp_path / "good.jpg"
    solid((200, 120, 40), (64, 64)).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    truncated = tmp_path / "truncated.png"
    solid((1, 2, 3), (64, 64)).save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:40])
    cfg = load_config("sample")
    ann = get_annotator("image_caption", cfg.annotators.image_caption, cfg.generation)
    assert isinstance(ann, FeaturesImageCaptioner) and ann.backend == "features"
    assert ann.prompt_version == prompt("features_image_caption").version
    reqs = [Request("a", "image_caption", image_path=str(good)), Request("b", "image_caption", image_path=str(corrupt)),
            Request("c", "image_caption", image_path=str(truncated)), Request("d", "image_caption"),
            Request("e", "image_caption", image_path=str(tmp_path / "missing.jpg"))]
    results = ann.annotate(reqs)
    assert [r.clip_id for r in results] == list("abcde")
    assert results[0].text and results[0].facts["dominant_colours"] == ["orange"]
    assert [r.error_reason for r in results[1:]] == ["undecodable_image", "undecodable_image", "missing_media", "missing_media"]
    rows, failures = ann.rows(results)
    assert [r["clip_id"] for r in rows] == ["a"] and rows[0]["prompt_version"] == ann.prompt_version
    assert json.loads(rows[0]["facts"])["warmth"] > 0.5 and json.loads(rows[0]["params"])["features_version"]
    assert [f["item_id"] for f in failures] == list("bcde") and all(f["stage"] == "annotate/image_caption" for f in failures)


# --- videos ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("videos")
    out = {k: str(d / f"{k}.mp4") for k in ("cut", "static", "testsrc", "pan", "fade", "noise", "zoom")}
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1"]
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x120:d=2:r=10", "-f", "lavfi", "-i", "color=c=blue:s=160x120:d=2:r=10",
           "-filter_complex", "[0][1]concat=n=2:v=1", *enc, out["cut"])
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=160x120:d=3:r=10", *enc, out["static"])
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=160x120:d=3:r=10", *enc, out["testsrc"])
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=480x120:d=4:r=10", "-vf", "crop=w=160:h=120:x='t*40':y=0", *enc, out["pan"])
    ffmpeg("-f", "lavfi", "-i", "color=c=white:s=160x120:d=3:r=10", "-vf", "fade=in:0:30", *enc, out["fade"])
    ffmpeg("-f", "lavfi", "-i", "nullsrc=s=160x120:d=2:r=10,geq=random(1)*255:128:128", *enc, out["noise"])
    # the sample corpus' own video: a slow zoom over a real photograph, with audio
    audio = str(d / "silence.flac")
    sf.write(audio, np.zeros(24000 * 6, np.float32), 24000)
    make_video(picture(spec(1, "photo:coffee"), 128), audio, out["zoom"], 6.0, 96, 8)
    bad = d / "garbage.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 50)
    out["garbage"] = str(bad)
    truncated = d / "truncated.mp4"
    truncated.write_bytes(open(out["zoom"], "rb").read()[:2000])
    out["truncated"] = str(truncated)
    out["audio_only"] = audio
    return out


@pytest.fixture(scope="module")
def measured(videos) -> dict[str, VideoFacts]:
    return {k: measure_video(videos[k]) for k in ("cut", "static", "testsrc", "pan", "fade", "noise", "zoom")}


def test_a_hard_cut_between_two_colours_is_one_scene_change(measured):
    cut = measured["cut"]
    assert cut.scene_changes == 1 and cut.cut_times_s[0] == pytest.approx(2.0, abs=0.25)
    assert cut.colours_start == ("red",) and cut.colours_end == ("blue",)
    assert cut.motion_energy < 0.002  # the cut itself is not motion
    words = video_words(cut)
    assert "one hard cut" in words["shots"] and "red" in words["colours"] and "blue" in words["colours"]


def test_a_static_video_has_no_motion(measured):
    static = measured["static"]
    assert static.motion_energy < 0.001 and static.motion_speed < 0.003 and static.scene_changes == 0
    assert static.zoom == 1.0 and static.pan == (0.0, 0.0)
    assert static.duration_s == pytest.approx(3.0, abs=0.1) and static.fps == pytest.approx(10.0)
    words = video_words(static)
    assert words["tempo"] == "static" and "holds still" in words["progression"] and words["camera"] == ""


def test_motion_cuts_and_camera_movement(measured):
    testsrc, pan, noise, zoom = measured["testsrc"], measured["pan"], measured["noise"], measured["zoom"]
    assert testsrc.scene_changes == 0 and testsrc.motion_energy > measured["static"].motion_energy
    assert pan.pan[0] > 0.5 and abs(pan.pan[1]) < 0.1 and pan.zoom == 1.0 and pan.scene_changes == 0
    assert "pans to the right" in video_words(pan)["camera"]
    assert noise.scene_changes == 0 and noise.motion_energy > 0.1  # constant change is not a string of cuts
    assert video_words(noise)["intensity"] in ("high", "very high")
    assert zoom.zoom > 1.15 and zoom.scene_changes == 0 and zoom.pan == (0.0, 0.0)  # zoompan to 1.3 over the clip
    assert "zooms in" in video_words(zoom)["camera"]
    assert pan.motion_speed > zoom.motion_speed > measured["static"].motion_speed


def test_a_fade_changes_light_not_movement(measured):
    fade = measured["fade"]
    assert fade.brightness_end - fade.brightness_start > 0.5 and fade.scene_changes == 0
    assert fade.motion_speed < 0.003
    words = video_words(fade)
    assert words["light"] == "it ends brighter than it begins" and "light and colour" in words["progression"]


def test_every_video_template_reads_well(measured):
    fields = {f for line in prompt("features_video_caption").lines() for _, f, _, _ in string.Formatter().parse(line) if f}
    for facts in measured.values():
        words = video_words(facts)
        assert fields <= set(words)
        for text in _all_variants("features_video_caption", words):
            _well_formed(text)
            assert words["shots"].lower() in text.lower()
    assert describe_video(measured["cut"], "as-v-0") == describe_video(measured["cut"], "as-v-0")


def test_video_annotator_results_and_failures(videos):
    cfg = load_config("sample")
    ann = get_annotator("video_caption", cfg.annotators.video_caption, cfg.generation)
    assert isinstance(ann, FeaturesVideoCaptioner) and ann.prompt_version == prompt("features_video_caption").version
    reqs = [Request("a", "video_caption", video_path=videos["cut"]), Request("b", "video_caption", video_path=videos["garbage"]),
            Request("c", "video_caption", video_path=videos["audio_only"]), Request("d", "video_caption"),
            Request("e", "video_caption", video_path=videos["cut"] + ".missing"),
            Request("f", "video_caption", video_path=videos["truncated"])]
    results = ann.annotate(reqs)
    assert [r.clip_id for r in results] == list("abcdef")
    assert results[0].text and results[0].facts["scene_changes"] == 1
    assert [r.error_reason for r in results[1:5]] == ["undecodable_video", "undecodable_video", "missing_media", "missing_media"]
    assert "no video stream" in results[2].error_detail
    # a truncated file either yields a caption from the frames that decode (flagged partial) or a failure row
    last = results[5]
    assert (last.text and last.facts["partial"]) or last.error_reason == "undecodable_video"
    rows, failures = ann.rows(results)
    assert len(rows) + len(failures) == 6 and all(f["stage"] == "annotate/video_caption" for f in failures)


def test_video_errors_carry_reasons(videos):
    with pytest.raises(VideoError) as e:
        measure_video(videos["garbage"])
    assert e.value.reason == "undecodable_video"


def test_facts_serialise(measured):
    facts = measure_image(solid((10, 200, 30)))
    assert isinstance(facts, ImageFacts) and json.loads(json.dumps(facts.to_dict()))["dominant_colours"] == ["green"]
    assert json.loads(json.dumps(measured["cut"].to_dict()))["cut_times_s"] == [measured["cut"].cut_times_s[0]]
