"""Caption stages in a build keep LLM answers in the store's request cache: a shard cut short
and run again sends only the requests that were never answered."""

import shutil

import pyarrow as pa

from annotators import base
from builders.annotate import caption_visual_shard
from mumu.config import load_config
from mumu.store import Store


def drop_annotators() -> None:
    """What a fresh worker process starts with: no annotator set up, nothing in memory."""
    base.teardown_all()


def clips_part(store: Store, name: str, ids: list[str]) -> str:
    part = store.path(f"clips/{name}.parquet")
    store.write_table(part, pa.table({"clip_id": ids, "image_path": [f"media/{i}.jpg" for i in ids],
                                                  "tags": [["Piano"]] * len(ids)}))
    return part


def test_a_rerun_after_a_cut_short_shard_sends_only_what_was_never_answered(tmp_path, tiny_llava_dir, media_dir):
    cfg = load_config("sample", {
        "annotators.image_caption": {"backend": "transformers", "model": str(tiny_llava_dir), "batch_size": 2,
                                     "options": {"min_chars": 1}},
        "generation.max_tokens": 8,
    }, str(tmp_path / "data"))
    store = Store(cfg.data_root)
    ids = ["as-img0-0", "as-img1-0"]
    for i in ids:
        store.fs.makedirs(store.path("media"), exist_ok=True)
        shutil.copy(media_dir / f"{i}.jpg", store.path("media", f"{i}.jpg"))

    drop_annotators()
    try:
        # the first run gets through one clip before it is killed
        first, failures = caption_visual_shard(store, cfg, clips_part(store, "cut", ids[:1]), "image_caption")
        assert first.num_rows == 1 and failures == []
        ann = base.annotator_for("image_caption", cfg, store)
        assert ann.cache.stats()["writes"] == 1 and len(ann.cache) == 1
        assert store.exists(store.path("cache/requests/image_caption"))

        drop_annotators()  # the rerun is a new process
        again, failures = caption_visual_shard(store, cfg, clips_part(store, "full", ids), "image_caption")
        ann = base.annotator_for("image_caption", cfg, store)
        assert failures == [] and again.num_rows == 2
        assert ann.cache.stats() == {"hits": 1, "misses": 1, "writes": 1}  # only the second clip was asked
        assert again.to_pylist()[0]["text"] == first.to_pylist()[0]["text"]
        assert len(ann.cache) == 2
    finally:
        drop_annotators()
