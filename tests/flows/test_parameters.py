"""The Run form the Prefect UI builds for each deployment, read through Prefect's own machinery:
closed choices are enums, every parameter is described, the common configuration sections are
forms (objects), the publish token is a Secret block; and, against a real server started by
``mumu server up``, a run whose parameters the schema refuses is never created."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from cli import server as srv
from flows.params import PROFILE_NAMES, BackendName, ModelPreset, build_inputs
from mumu.config import BACKEND_NAMES, available_profiles, load_config

REPO = Path(__file__).resolve().parents[2]
BUILD_FLOWS = [("flows.mucaps", "build_mucaps"), ("flows.muvisual", "build_muimage"),
               ("flows.muvisual", "build_muvideo"), ("flows.muedit", "build_muedit"), ("flows.build_all", "build_all")]
# the flows whose every parameter the UI describes (the source flows are not yet among them)
DOCUMENTED = [*BUILD_FLOWS, ("flows.publish", "publish_hub"), ("flows.evaluate", "evaluate_mumu"),
              ("flows.train", "train_mumu")]


def _flow(module: str, attr: str):
    return getattr(importlib.import_module(module), attr)


def schema_of(module: str, attr: str) -> dict:
    """The parameter schema a deployment of this flow sends to the server (and the UI renders)."""
    return parameter_schema(_flow(module, attr)).model_dump_for_openapi()


def deployments() -> list[dict]:
    return [d for name in srv.DEPLOYMENT_FILES for d in yaml.safe_load((REPO / name).read_text())["deployments"]]


def _definition(schema: dict, prop: dict) -> dict:
    """The object schema a property refers to (``anyOf: [{$ref}, {type: null}]`` for an optional one)."""
    refs = [a["$ref"] for a in prop.get("anyOf", [prop]) if "$ref" in a]
    assert refs, prop
    return schema["definitions"][refs[0].rsplit("/", 1)[1]]


def test_the_closed_choices_match_what_they_choose_from():
    from model.config import PRESETS

    assert sorted(PROFILE_NAMES) == available_profiles()  # a new profile in mumu/profiles joins the dropdown
    assert set(BackendName.__args__) == set(BACKEND_NAMES)
    assert set(ModelPreset.__args__) == set(PRESETS)


@pytest.mark.parametrize("module,attr", BUILD_FLOWS)
def test_a_build_flows_form_has_a_profile_dropdown_and_section_forms(module, attr):
    schema = schema_of(module, attr)
    props = schema["properties"]
    assert props["profile"]["enum"] == list(PROFILE_NAMES) and props["profile"]["default"] == "sample"
    for section, fields in (("mirror", {"segments_csv", "media_dir", "parquet"}),
                            ("annotators", {"music_caption", "image_caption", "video_caption", "text"}),
                            ("sizes", {"items_per_shard", "corpus_clips", "targets"})):
        obj = _definition(schema, props[section])
        assert obj["type"] == "object" and fields <= set(obj["properties"]), section
        assert obj["additionalProperties"] is False  # a typo in a key is refused, not ignored
        assert all(p.get("description") for p in obj["properties"].values()), section
    role = _definition(schema, _definition(schema, props["annotators"])["properties"]["music_caption"])
    assert {"enum": list(BACKEND_NAMES), "type": "string"} in role["properties"]["backend"]["anyOf"]
    shard = _definition(schema, props["sizes"])["properties"]["items_per_shard"]
    assert {"minimum": 1, "type": "integer"} in shard["anyOf"]  # ShardSpec's own bound
    assert "e.g." in props["overrides"]["description"]  # the escape hatch shows examples


@pytest.mark.parametrize("module,attr", DOCUMENTED)
def test_every_parameter_is_described_without_html(module, attr):
    flow = _flow(module, attr)
    schema = schema_of(module, attr)
    assert set(schema["properties"]) == set(flow.parameters.properties)
    for name, prop in schema["properties"].items():
        text = prop.get("description") or ""
        assert text.strip(), f"{attr}: {name} has no description"
        assert "<" not in text and ">" not in text, f"{attr}: {name}: the UI reads angle brackets as HTML"
    assert "<" not in (flow.description or "") and ">" not in (flow.description or "")


def test_the_closed_choices_of_training_and_evaluation():
    ev = schema_of("flows.evaluate", "evaluate_mumu")["properties"]
    assert ev["device"]["enum"][0] == "cpu" and "cuda" in ev["device"]["enum"]
    assert {"enum": ["MUCaps", "MUImage", "MUVideo", "MUEdit"], "type": "string"} == \
        next(a for a in ev["datasets"]["anyOf"] if a.get("type") == "array")["items"]
    assert ev["split"]["enum"] == ["eval", "train"]


def test_the_publish_token_is_a_secret_block():
    schema = schema_of("flows.publish", "publish_hub")
    token = schema["properties"]["token_secret_block"]
    block = _definition(schema, token)
    assert block["block_type_slug"] == "secret"
    assert schema["properties"]["repo_id"]["pattern"]  # owner/name


def test_deployment_names_are_a_menu():
    names = [d["name"] for d in deployments()]
    assert len(names) == len(set(names)), f"two deployments share a name: {sorted(names)}"
    assert "sample" not in names
    for d in deployments():
        assert d.get("enforce_parameter_schema") is True, d["name"]
        assert "<" not in d["description"] and len(d["description"]) > 60, d["name"]


def test_every_deployments_defaults_fit_its_schema():
    for d in deployments():
        schema = schema_of(*d["entrypoint"].rsplit(".", 1))
        defaults = {**{k: v["default"] for k, v in schema["properties"].items() if "default" in v}, **d["parameters"]}
        # what is required but left to the run (select-segments: segments, out) is not checked here
        validate(defaults, {**schema, "required": []}, raise_on_error=True, preprocess=True)


BAD = [({"sizes": {"items_per_shard": 0}}, "items_per_shard"), ({"profile": "nope"}, "profile"),
       ({"mirror": {"segmentz_csv": ["a.csv"]}}, "segmentz_csv"),
       ({"annotators": {"music_caption": {"backend": "gpt-5"}}}, "backend")]


@pytest.mark.parametrize("params,key", BAD)
def test_the_server_side_validator_refuses_what_a_build_cannot_take(params, key):
    schema = schema_of("flows.mucaps", "build_mucaps")
    with pytest.raises(ValidationError):
        validate({"profile": "sample", **params}, schema, raise_on_error=True, preprocess=True)


def test_a_python_call_checks_the_same_values_and_still_takes_a_yaml_path(tmp_path):
    from prefect.exceptions import ParameterTypeError

    from flows.mucaps import build_mucaps

    for params, _ in BAD:
        with pytest.raises(ParameterTypeError):
            build_mucaps.validate_parameters(params)
    own = tmp_path / "mine.yaml"
    own.write_text("extends: sample\nshards: {items_per_shard: 3}\n")
    assert build_mucaps.validate_parameters({"profile": str(own)})["profile"] == str(own)  # mumu build --profile FILE
    assert build_mucaps.validate_parameters({"data_root": "x", "overrides": {"corpus.clips": 2}})["overrides"]


def test_the_sections_become_the_dotted_overrides_a_build_loads(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("extends: sample\ncorpus: {clips: 9}\n")
    profile, overrides = build_inputs(
        "paper", str(own), {"media_dir": "/data/audioset", "segments_csv": ["/data/a.csv"]},
        {"music_caption": {"backend": "vllm", "model": "Qwen/Qwen2-Audio-7B-Instruct", "resources": "gpu"},
         "text": {"custom_backend": "mypkg.annotators:Mine"}},
        {"items_per_shard": 3, "targets": {"MUCaps": 5}}, {"shards.items_per_shard": 2})
    assert profile == str(own)  # profile_file wins over profile
    assert overrides == {"mirror.media_dir": "/data/audioset", "mirror.segments_csv": ["/data/a.csv"],
                         "annotators.music_caption.backend": "vllm",
                         "annotators.music_caption.model": "Qwen/Qwen2-Audio-7B-Instruct",
                         "annotators.music_caption.resources": "gpu",
                         "annotators.text.backend": "mypkg.annotators:Mine",
                         "shards.items_per_shard": 2,  # overrides last: the expert's word wins
                         "targets.MUCaps": 5}
    cfg = load_config(profile, overrides)
    assert cfg.shards.items_per_shard == 2 and cfg.corpus.clips == 9 and cfg.targets.MUCaps == 5
    assert cfg.annotators.music_caption.backend == "vllm" and cfg.annotators.text.backend == "mypkg.annotators:Mine"
    assert build_inputs("sample", None, None, None, None, None) == ("sample", None)  # nothing set: the profile as it is


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.flows.test_deployments import mumu_server_up

    with mumu_server_up(tmp_path_factory.mktemp("prefect-home")) as state:
        yield state


@pytest.mark.slow
@pytest.mark.parametrize("params,key", BAD[:2])
def test_the_server_refuses_a_run_with_a_bad_value_before_any_worker_starts(server, params, key):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Scheduled

    with srv.api_client(server["api_url"]) as client:
        dep = client.read_deployment_by_name("build-mucaps/mucaps-demo")
        assert dep.enforce_parameter_schema
        with pytest.raises(PrefectHTTPStatusError) as err:
            client.create_flow_run_from_deployment(dep.id, parameters=params)
        assert err.value.response.status_code == 409
        assert "Validation failed" in err.value.response.text and key in err.value.response.text
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        assert runs == []  # nothing was created, so no worker ever sees it
        # the same form with a good value is taken (scheduled a day out, so no worker picks it up)
        later = Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1))
        ok = client.create_flow_run_from_deployment(dep.id, parameters={"sizes": {"items_per_shard": 2}}, state=later)
        assert ok.parameters["sizes"] == {"items_per_shard": 2}
        client.delete_flow_run(ok.id)
