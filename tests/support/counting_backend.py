"""A test backend that counts its lifecycle: the features music captioner, with every setup and
teardown appended to ``<options.log_dir>/events.log`` as ``<pid> <event> <role>`` (named in a
profile as ``backend: tests.support.counting_backend:CountingCaptioner``). Its setup is where a
real backend would load its model: it must happen only in workers, only for a request to answer,
once per worker per role."""

from __future__ import annotations

import os

from annotators.features_backend import FeaturesMusicCaptioner
from tasks.loads import LOAD, count


class CountingCaptioner(FeaturesMusicCaptioner):
    backend = "counting"
    loads_model = True

    def _log(self, event: str) -> None:
        folder = self.spec.options["log_dir"]
        with open(os.path.join(folder, "events.log"), "a") as f:  # one short append per event
            f.write(f"{os.getpid()} {event} {self.role}\n")

    def setup(self) -> None:
        if not self._ready:
            self._log("setup")
            count(self.role, LOAD)
        super().setup()

    def teardown(self) -> None:
        if self._ready:
            self._log("teardown")
        super().teardown()

    def annotate(self, requests):
        if requests and not self._ready:
            self.setup()
        return super().annotate(requests)
