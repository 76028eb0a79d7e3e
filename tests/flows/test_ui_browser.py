"""The Prefect UI as a data engineer uses it, in a real headless browser (Chromium through playwright).

Against conftest.py's plain server (every deployment of prefect.yaml, one worker, one finished
build-mucaps/mucaps-demo run), starting from the server's root URL, which opens the UI Prefect
serves by default:

- Deployments -> mucaps-demo -> Run -> Custom run: the form shows the ``profile`` dropdown (the
  bundled profiles) and the parameters' descriptions, sections included;
- a value the schema refuses never becomes a run: ``sizes.items_per_shard`` 0 is stopped by the
  form (the schema's minimum, the browser's validation message), and an ``annotators``
  ``custom_backend`` that is no ``package.module:Class`` is refused by the server with Prefect's
  validation message; the deployment has no new flow run afterwards (read through the API);
- the finished build's summary artifact shows where the dataset is (the absolute path, as text) and
  a figure (an inline PNG the browser decodes).

Screenshots (PNG) of the form, the validation messages and the summary go to ``$MUMU_SCREENSHOTS``
when set (``MUMU_SCREENSHOTS=docs/screenshots`` refreshes the README's), else to the test's tmp_path.
Chromium and playwright are test dependencies (``make test`` installs both): missing, the test fails
and says how to install them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from cli import server as srv
from flows.params import PROFILE_NAMES

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package; playwright never downloads one
WAIT_MS = 60_000  # the longest any condition is waited for (the UI's first load compiles nothing, but CI is slow)
DEPLOYMENT = ("build-mucaps", "mucaps-demo")


def summary_artifacts(keys: set[str]) -> tuple[str, str]:
    """The keys of (the artifact that shows the dataset's location, the one that shows its figures)
    among a build run's artifact keys: the run's summary (``...-summary``) for both where it exists,
    else the dataset link (``...-output``) and the statistics with the figures inline."""
    summary = sorted(k for k in keys if k.endswith("-summary"))
    if summary:
        return summary[0], summary[0]
    return (next(k for k in sorted(keys) if k.endswith("-output")),
            next(k for k in sorted(keys) if k.endswith("-statistics")))


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make test` installs it (the dev extra of pyproject.toml), "
                    "or `.venv/bin/pip install playwright` (never `playwright install`: the test uses Debian's Chromium)")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not installed ({CHROMIUM} is missing): `make test` installs it "
                    "(scripts/install-system-deps.sh), or as root: apt-get install -y --no-install-recommends "
                    "chromium chromium-driver")
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI runs as root); the pages are our own
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where the screenshots go: $MUMU_SCREENSHOTS, else this test's tmp_path."""
    out = Path(os.environ.get("MUMU_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def shoot(page, path: Path, full_page: bool = True) -> None:
    """A PNG of the page, written to a temporary name and renamed (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    page.screenshot(path=str(tmp), full_page=full_page)
    tmp.replace(path)


def open_ui(page, deployed: dict) -> str:
    """Open the server's root URL; the base URL of the UI it lands on (Prefect's default UI)."""
    from playwright.sync_api import expect

    page.goto(f"{deployed['ui']}/")
    nav = page.get_by_role("link", name="Deployments").first
    expect(nav).to_be_visible()
    href = nav.get_attribute("href")  # "/deployments", or "/v2/deployments": where the UI's routes start
    assert href.endswith("/deployments"), href
    return deployed["ui"] + href.removesuffix("/deployments")


def open_custom_run(page, deployed: dict) -> str:
    """Deployments -> mucaps-demo -> Run -> Custom run, by clicks; the deployment's id."""
    from playwright.sync_api import expect

    open_ui(page, deployed)
    page.get_by_role("link", name="Deployments").first.click()
    page.get_by_role("link", name=DEPLOYMENT[1], exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/deployments/deployment/[0-9a-f-]{36}"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    expect(page).to_have_url(re.compile(r"/deployments/deployment/([0-9a-f-]{36})/run"))
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    return re.search(r"/deployment/([0-9a-f-]{36})/run", page.url).group(1)


def field(page, text: str):
    """The form field (label, description, input) whose label or description is ``text``."""
    return page.get_by_text(text, exact=True).locator("xpath=ancestor::div[contains(@class, 'group')][1]")


def deployment_runs(deployed: dict, deployment_id: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with srv.api_client(deployed["api"]) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_custom_run_form_has_dropdowns_and_descriptions(deployed, page, shots):
    from playwright.sync_api import expect

    open_custom_run(page, deployed)
    profile = page.get_by_role("button", name="Select profile")
    expect(profile).to_have_text("sample")  # the deployment's parameter, preselected
    expect(page.get_by_text("The bundled configuration profile: sample", exact=False)).to_be_visible()
    expect(page.get_by_text("Shard size, sample corpus clips and train targets", exact=False)).to_be_visible()
    profile.click()
    expect(page.get_by_role("option")).to_have_text(list(PROFILE_NAMES))  # a dropdown of the bundled profiles
    shoot(page, shots / "custom-run-profile-dropdown.png", full_page=False)  # the dropdown open, as the window shows it
    page.keyboard.press("Escape")
    expect(page.get_by_role("option")).to_have_count(0)
    page.get_by_role("tab", name="SizeParams").click()  # a section opens as its own documented fields
    expect(page.get_by_text("Items per shard: one Prefect task per shard (at least 1).", exact=True)).to_be_visible()
    expect(page.get_by_text("Clips the sample corpus renders (sample profiles only).", exact=True)).to_be_visible()
    shoot(page, shots / "custom-run-form.png")


def test_invalid_values_show_the_message_and_create_no_run(deployed, page, shots):
    from playwright.sync_api import expect

    dep_id = open_custom_run(page, deployed)
    before = {r.id for r in deployment_runs(deployed, dep_id)}

    # items_per_shard 0: the schema's minimum, enforced by the form before anything is sent
    page.get_by_role("tab", name="SizeParams").click()
    shard = field(page, "Items Per Shard (Optional)")
    shard.get_by_role("tab", name="int").click()
    box = shard.get_by_role("spinbutton")
    box.fill("0")
    page.get_by_role("button", name="Submit").click()
    expect(box).to_be_focused()  # the browser stopped the submit at this field and shows its message
    message = box.evaluate("e => e.validationMessage")  # the bubble's text, e.g. "Value must be ... 1."
    assert "1" in message and box.evaluate("e => e.validity.rangeUnderflow"), message
    expect(page).to_have_url(re.compile(r"/run(\?|$)"))  # still on the form
    shoot(page, shots / "custom-run-invalid-items-per-shard.png")

    # a custom backend that is no package.module:Class: the server refuses the run, the UI says why
    open_custom_run(page, deployed)
    page.get_by_role("tab", name="AnnotatorsParams").click()
    field(page, "Music captions (every dataset).").get_by_role("tab", name="AnnotatorParams").click()
    custom = field(page, "Custom Backend (Optional)")
    custom.get_by_role("tab", name="str").click()
    custom.get_by_role("textbox").fill("not a class")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Validation failed for field 'annotators.music_caption.custom_backend'",
                            exact=False)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/run(\?|$)"))
    shoot(page, shots / "custom-run-invalid-custom-backend.png")

    # read after the server answered the second submit: neither attempt made a flow run
    assert {r.id for r in deployment_runs(deployed, dep_id)} == before


def test_finished_build_summary_shows_location_and_figure(deployed, mucaps_run, page, shots):
    from playwright.sync_api import expect
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with srv.api_client(deployed["api"]) as client:
        keys = {a.key for a in client.read_artifacts(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[mucaps_run["id"]]))) if a.key}
    where_key, figure_key = summary_artifacts(keys)
    location = str(mucaps_run["dir"])
    assert Path(location).is_absolute()

    ui = open_ui(page, deployed)

    def open_artifact(key: str) -> None:  # the run page -> Artifacts tab -> the artifact's card
        page.goto(f"{ui}/runs/flow-run/{mucaps_run['id']}")
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_role("link").filter(has=page.get_by_text(key, exact=True)).click()
        expect(page).to_have_url(re.compile(r"/artifacts/artifact/[0-9a-f-]{36}"))

    open_artifact(where_key)
    if where_key.endswith("-summary"):
        expect(page.get_by_text(location, exact=True).first).to_be_visible()  # the code span: the path itself
    else:  # the dataset link until the summary artifact exists: its URL is the location
        expect(page.locator(f'a[href="file://{location}"]')).to_be_visible()
    if figure_key != where_key:
        open_artifact(figure_key)
    figure = page.locator('img[src^="data:image/png"]').first
    expect(figure).to_be_visible()
    # the PNG decoded (a broken image has no natural width)
    page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=figure.element_handle())
    shoot(page, shots / "build-summary-artifact.png")
