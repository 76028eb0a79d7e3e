"""One failure type: every error that stands for a bad item is an ItemError and becomes the same row."""

import pytest

from mumu.failures import Failure, ItemError
from mumu.tables import FAILURES


def _item_errors():
    from annotators.chat_outputs import InvalidOutput
    from annotators.pool_writer import ContextError
    from annotators.video_decode import VideoError
    from builders.muedit import NoWording
    from mumu.media import MediaError
    from mumu.safe_paths import ArchiveError
    from sources.download import DownloadError

    return [MediaError("silent_audio", "x"), VideoError("bad_video", "x"), DownloadError("gone", "x", False),
            ArchiveError("x", "bad_member"), NoWording("no_agreeing_template", "x"), ContextError("missing_context", "x"),
            InvalidOutput("too_long", "x")]


@pytest.mark.parametrize("err", _item_errors(), ids=lambda e: type(e).__name__)
def test_every_item_error_makes_a_failures_row(err):
    assert isinstance(err, ItemError) and str(err) == "x"
    row = err.row("clip-1", "clips")
    assert list(row) == list(FAILURES) and row == {"item_id": "clip-1", "stage": "clips", "reason": err.reason, "detail": "x"}
    assert err.failure == Failure(err.reason, "x")


def test_a_subclass_default_reason_applies_when_none_is_given():
    from mumu.safe_paths import ArchiveError

    assert ArchiveError("broken").reason == "bad_archive" and ItemError(None, "d").reason == "bad_item"
