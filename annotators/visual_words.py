"""Wording of measured facts: the template fields of a picture's or a video's facts, and the captions.

Every word is read from a measured number (``annotators.image_measure``, ``annotators.video_measure``);
the template variants are the prompt files ``features_image_caption`` and ``features_video_caption``.
"""

from __future__ import annotations

import math

from annotators.image_measure import ImageFacts
from annotators.prompts import pick, prompt
from annotators.video_measure import VideoFacts


def _join(items) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _level(value: float, edges: tuple[float, ...]) -> int:
    """0..len(edges): how many of the ascending edges value reaches."""
    return sum(value >= e for e in edges)


def lighting_word(brightness: float) -> str:
    return ["very dark", "dark", "dimly lit", "softly lit", "bright", "very bright"][
        _level(brightness, (0.15, 0.28, 0.4, 0.6, 0.8))]


def contrast_word(contrast: float) -> str:
    return ["low contrast", "moderate contrast", "strong contrast"][_level(contrast, (0.1, 0.2))]


def vividness_word(colourful: float) -> str:
    # Hasler & Suesstrunk's scale: 15 slightly, 33 moderately, 45 averagely, 59 quite, 82 highly colourful
    return ["nearly colourless", "muted", "moderately colourful", "colourful", "vivid"][_level(colourful, (8, 25, 45, 75))]


def palette_word(warmth: float, chromatic: float) -> str:
    if chromatic < 0.15:
        return "neutral"
    return "warm" if warmth > 0.35 else "cool" if warmth < -0.35 else "mixed warm-and-cool"


def texture_word(edge_density: float, texture: float) -> str:
    if edge_density < 0.025 and texture < 0.025:
        return "smooth and uncluttered"
    return ["clean, with a few clear shapes", "moderately detailed", "busy and finely detailed",
            "dense with fine, grainy detail"][_level(edge_density, (0.07, 0.14, 0.25))]


ENERGY = ["calm", "gentle", "lively", "intense"]


def energy_level(edge_density: float, colourful: float, contrast: float) -> int:
    score = (0.5 * min(edge_density / 0.25, 1.0) + 0.3 * min(colourful / 110.0, 1.0)
             + 0.2 * min(contrast / 0.3, 1.0))
    return _level(score, (0.3, 0.5, 0.72))


MOODS = {  # (palette, light level: dark / middle / bright) -> mood
    "neutral": ("sombre and austere", "understated and reflective", "quiet and clean"),
    "warm": ("warm and intimate", "warm and inviting", "sunny and cheerful"),
    "cool": ("nocturnal and mysterious", "cool and calm", "airy and serene"),
    "mixed": ("brooding and atmospheric", "relaxed and easy-going", "playful and open"),
}


def mood_words(brightness: float, warmth: float, chromatic: float, colourful: float) -> str:
    """A mood read from light and colour: brightness for valence, the palette for its colour."""
    light = _level(brightness, (0.35, 0.55))
    if colourful < 15 or chromatic < 0.15:
        palette = "neutral"
    else:
        palette = "warm" if warmth > 0.35 else "cool" if warmth < -0.35 else "mixed"
    return MOODS[palette][light]


CUE_PHRASES = {
    "blue_top": "A smooth, sky-like blue fills the top of the frame.",
    "deep_blue_top": "A smooth, deep blue fills the top of the frame, like an evening sky.",
    "vertical_gradient": "The background shifts smoothly from {top} at the top to {bottom} at the bottom.",
    "bright_specks": "Small bright points are scattered across a dark field.",
    "mostly_dark": "Most of the frame sits in deep shadow.",
    "mostly_white": "Most of the frame is close to white.",
    "mostly_bright": "Most of the frame is brightly lit.",
    "central_detail": "The detail is concentrated in the centre, against a plainer surround.",
    "flat_colour_areas": "It is built from flat areas of solid colour with crisp edges.",
    "greyscale": "It is almost black and white.",
}


def _cue_sentences(facts: ImageFacts) -> str:
    out = []
    for cue in facts.cues:
        phrase = CUE_PHRASES.get(cue)
        if phrase is None:
            continue
        if cue == "vertical_gradient":
            if facts.top_colour != facts.bottom_colour:
                phrase = phrase.format(top=facts.top_colour, bottom=facts.bottom_colour)
            else:
                way = "darker" if facts.bottom_brightness < facts.top_brightness else "lighter"
                phrase = f"The background is a smooth {facts.top_colour} gradient, {way} towards the bottom."
        out.append(phrase)
    return " ".join(out)


def image_words(facts: ImageFacts) -> dict[str, str]:
    """The template fields for one picture's facts."""
    lighting = lighting_word(facts.brightness)
    vivid = vividness_word(facts.colourfulness)
    palette = palette_word(facts.warmth, facts.chromatic_share)
    energy = ENERGY[energy_level(facts.edge_density, facts.colourfulness, facts.contrast)]
    mood = mood_words(facts.brightness, facts.warmth, facts.chromatic_share, facts.colourfulness)
    return {
        "lighting": lighting, "Lighting": _cap(lighting), "a_lighting": _a(lighting), "A_lighting": _cap(_a(lighting)),
        "contrast": contrast_word(facts.contrast),
        "vividness": vivid, "a_vividness": _a(vivid),
        "palette": palette, "a_palette": _a(palette),
        "colours": _join(facts.dominant_colours),
        "main_colours": (f"the main colour is {facts.dominant_colours[0]}" if len(facts.dominant_colours) == 1
                         else f"the main colours are {_join(facts.dominant_colours)}"),
        "texture": texture_word(facts.edge_density, facts.texture),
        "energy": energy, "a_energy": _a(energy),
        "mood": mood, "a_mood": _a(mood),
        "cues": _cue_sentences(facts),
    }


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    for a, b in ((" .", "."), (" ,", ","), (" ;", ";"), ("..", ".")):
        text = text.replace(a, b)
    return text.strip()


def describe_image(facts: ImageFacts, key: str) -> str:
    """The caption: a template variant chosen by ``key`` (the clip id), filled with the facts' words."""
    template = pick(prompt("features_image_caption").lines(), key, salt="features_image_caption")
    return _tidy(template.format(**image_words(facts)))


TEMPO = ["static", "slow", "moderate", "brisk", "fast"]
INTENSITY = ["very low", "low", "moderate", "high", "very high"]
MOVEMENT = ["almost nothing moves", "movement is slow and gentle", "movement is steady and moderate",
            "movement is lively", "movement is fast and energetic"]
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _number(k: int) -> str:
    return _NUMBERS[k] if k < len(_NUMBERS) else str(k)


def video_levels(facts: VideoFacts) -> dict[str, int]:
    """Pace (how fast things move), energy (how much the picture changes), cuts, tempo and intensity, 0..4."""
    pace = _level(facts.motion_speed, (0.003, 0.05, 0.12, 0.3))
    energy = _level(facts.motion_energy, (0.002, 0.012, 0.035, 0.08))
    per_min = facts.scene_changes / max(facts.duration_s, 1e-6) * 60.0
    cuts = 0 if facts.scene_changes == 0 else _level(per_min, (0.0, 8.0, 20.0, 40.0))
    tempo = max(pace, cuts, energy - 1)
    intensity = max(energy, cuts, pace - 1)
    return {"pace": pace, "energy": energy, "cuts": cuts, "tempo": tempo, "intensity": intensity}


def _camera_sentence(facts: VideoFacts) -> str:
    shot = max(facts.longest_shot_s, 1e-6)
    if facts.zoom != 1.0:
        per_s = abs(math.log(facts.zoom)) / shot
        how = "slowly" if per_s < math.log(1.05) else "steadily" if per_s < math.log(1.15) else "quickly"
        return f"The view {how} zooms {'in' if facts.zoom > 1 else 'out'}."
    dx, dy = facts.pan
    if (dx, dy) == (0.0, 0.0):
        return ""
    per_s = math.hypot(dx, dy) / shot
    how = "slowly" if per_s < 0.1 else "steadily" if per_s < 0.3 else "quickly"
    horizontal = "to the right" if dx > 0 else "to the left"
    vertical = "downwards" if dy > 0 else "upwards"
    if abs(dx) >= 2.5 * abs(dy):
        return f"The view {how} pans {horizontal}."
    if abs(dy) >= 2.5 * abs(dx):
        return f"The view {how} tilts {vertical}."
    return f"The view {how} drifts {vertical} and {horizontal}."


def _progression(facts: VideoFacts, levels: dict[str, int]) -> str:
    if levels["pace"] == 0 and levels["energy"] == 0:
        return "the picture holds still within each shot" if facts.scene_changes else "the frame holds still from start to finish"
    if levels["pace"] == 0:
        return "the picture changes only in light and colour"
    a, b, c = facts.motion_curve
    lo = max(min(a, b, c), 1e-6)
    if c >= 1.5 * a and c >= b:
        phrase = "the motion builds towards the end"
    elif a >= 1.5 * c and a >= b:
        phrase = "the motion eases off towards the end"
    elif b >= 1.5 * max(a, c):
        phrase = "the motion peaks in the middle"
    elif b * 1.5 <= min(a, c) and b == lo:
        phrase = "the motion dips in the middle"
    else:
        phrase = "the motion stays even throughout"
    if facts.motion_variation > 1.2:
        phrase += ", in uneven bursts"
    return phrase


def _shots(facts: VideoFacts) -> str:
    k = facts.scene_changes
    if k == 0:
        return "a single continuous shot"
    if k == 1:
        return f"two shots, with one hard cut at about {facts.cut_times_s[0]:.0f} s"
    every = facts.duration_s / (k + 1)
    return f"{_number(k + 1)} shots, with a hard cut about every {every:.0f} s" if every >= 1.5 else \
        f"{_number(k + 1)} shots in rapid succession"


def _light(facts: VideoFacts) -> str:
    delta = facts.brightness_end - facts.brightness_start
    if delta >= 0.08:
        return "it ends brighter than it begins"
    if delta <= -0.08:
        return "it ends darker than it begins"
    level = ["very dark", "dark", "dim", "soft", "bright", "very bright"][_level(facts.brightness, (0.15, 0.28, 0.4, 0.6, 0.8))]
    return f"the light stays {level} throughout"


def _colour_change(facts: VideoFacts) -> str:
    start, end = facts.colours_start, facts.colours_end
    if start[0] == end[0] or set(start[:2]) == set(end[:2]):
        common = [c for c in start if c in end] or list(start[:1])
        return f"the colours stay mostly {_join(common)}"
    return f"the colours move from {_join(start[:2])} at the start to {_join(end[:2])} at the end"


def video_words(facts: VideoFacts) -> dict[str, str]:
    """The template fields for one video's facts."""
    lv = video_levels(facts)
    camera = _camera_sentence(facts)
    if camera:
        lv["pace"] = max(lv["pace"], 1)
        lv["tempo"] = max(lv["tempo"], 1)
    movement = MOVEMENT[lv["pace"]]
    shots = _shots(facts)
    colours = _colour_change(facts)
    light = _light(facts)
    tempo, intensity = TEMPO[lv["tempo"]], INTENSITY[lv["intensity"]]
    vivid = vividness_word(facts.colourfulness)
    mood = mood_words(facts.brightness, facts.warmth, facts.chromatic_share, facts.colourfulness)
    return {
        "seconds": f"{max(1, round(facts.duration_s))}",
        "shots": shots, "Shots": _cap(shots),
        "camera": camera,
        "movement": movement, "Movement": _cap(movement),
        "progression": _progression(facts, lv),
        "light": light, "Light": _cap(light),
        "colours": colours, "Colours": _cap(colours),
        "tempo": tempo, "a_tempo": _a(tempo), "intensity": intensity,
        "vividness": vivid, "palette": palette_word(facts.warmth, facts.chromatic_share),
        "mood": mood, "a_mood": _a(mood),
    }


def describe_video(facts: VideoFacts, key: str) -> str:
    """The caption: a template variant chosen by ``key`` (the clip id), filled with the facts' words."""
    template = pick(prompt("features_video_caption").lines(), key, salt="features_video_caption")
    return _tidy(template.format(**video_words(facts)))
