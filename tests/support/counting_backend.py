"""Test backends that count their lifecycle: the features captioners, with every setup and teardown
appended to ``<options.log_dir>/events.log`` as ``<pid> <event> <role>`` (named in a profile as
``backend: tests.support.counting_backend:CountingCaptioner`` or ``...:CountingImageCaptioner``).
Their setup is where a real backend would load its model: it must happen only in workers, only
for a request to answer, once per worker per role, and, for roles declared ``resources: gpu``,
never while another such role's engine is set up in the same process."""

from __future__ import annotations

import os

from annotators.features_backend import FeaturesMusicCaptioner
from annotators.visual_features import FeaturesImageCaptioner


class Counting:
    backend = "counting"
    loads_model = True

    def _log(self, event: str) -> None:
        folder = self.spec.options["log_dir"]
        with open(os.path.join(folder, "events.log"), "a") as f:  # one short append per event
            f.write(f"{os.getpid()} {event} {self.role}\n")

    def _load(self) -> None:  # where a real backend loads its model (setup counts the load)
        self._log("setup")

    def _unload(self) -> None:
        self._log("teardown")

    def annotate(self, requests):
        if requests:
            self.setup()
        return super().annotate(requests)


class CountingCaptioner(Counting, FeaturesMusicCaptioner):
    pass


class CountingImageCaptioner(Counting, FeaturesImageCaptioner):
    pass
