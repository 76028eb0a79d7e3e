"""build-all: the four datasets as subflows over shared source and annotation stages."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.checks import checked_config
from flows.muedit import build_muedit
from flows.mucaps import build_mucaps
from flows.muvisual import build_muimage, build_muvideo
from flows.runners import shared_cluster


@flow(name="build-all", log_prints=True)
def build_all(profile: str = "sample", data_root: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Build MUCaps, MUImage, MUVideo and MUEdit. The AudioSet clips and captions are made once:
    MUCaps' run makes clips and music captions, MUImage and MUVideo find them done (markers) and
    add only their image or video captions."""
    cfg = checked_config(profile, overrides, data_root)  # every source at once, before any dataset starts
    with shared_cluster(cfg) as cluster:  # one Dask cluster for the four datasets (runner.kind: dask)
        kw = dict(profile=profile, data_root=data_root, overrides={**(overrides or {}), **cluster} or None)
        return {name: fn(**kw) for name, fn in (("MUCaps", build_mucaps), ("MUImage", build_muimage),
                                                 ("MUVideo", build_muvideo), ("MUEdit", build_muedit))}
