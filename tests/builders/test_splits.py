from builders.splits import decontamination_ids, split_of
from mumu.config import load_config


def test_split_is_deterministic_and_near_the_fraction():
    ids = [f"vid{i:05d}" for i in range(4000)]
    a = [split_of(i, 0.2, seed=0) for i in ids]
    assert a == [split_of(i, 0.2, seed=0) for i in ids]
    share = a.count("eval") / len(a)
    assert 0.18 < share < 0.22
    assert a != [split_of(i, 0.2, seed=1) for i in ids]  # the seed matters


def test_a_larger_fraction_only_adds_to_eval():
    ids = [f"v{i}" for i in range(1000)]
    small = {i for i in ids if split_of(i, 0.1) == "eval"}
    large = {i for i in ids if split_of(i, 0.3) == "eval"}
    assert small < large


def test_decontamination_ids_from_config_and_files(tmp_path):
    f = tmp_path / "musiccaps.csv"
    f.write_text("ytid,start_s\n-0Gj8-vB1q4,30\n# comment\n\"-0SdAVK79lg\",0\n")
    cfg = load_config("sample", {"splits.decontaminate_ids": ["abc"], "splits.decontaminate_files": [str(f)]})
    lists = decontamination_ids(cfg)
    assert set(lists) == {"abc", "-0Gj8-vB1q4", "-0SdAVK79lg"} and "abc" in lists and "zzz" not in lists
    assert sorted(lists) == list(lists)  # sorted(excluded) in shard fingerprints stays a sorted id list
