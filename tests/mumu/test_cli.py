import json
import shutil

import pytest
from typer.testing import CliRunner

from mumu.cli import app

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
    from tests.schemas.test_validate import PROV
    from mumu.config import load_config
    from schemas.datasets import MUCAPS
    from tasks.finalize import finalize_dataset
    from tasks.stage import ShardResult
    from tasks.store import Store
    from tests.helpers import write_parts

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
