"""A scripted backend for the annotator loop: answers from a function, counts what it was sent."""

from __future__ import annotations

from annotators.chat_messages import ChatRequest
from annotators.requests import ChatAnnotator, Generation, build_annotator


class ScriptedAnnotator(ChatAnnotator):
    backend = "scripted"

    def __init__(self, role, spec, generation, answer=None):
        super().__init__(role, spec, generation)
        self.answer = answer or (lambda chat: '{"response": "Here is calm guitar music for you."}')
        self.calls: list[list[ChatRequest]] = []  # what each _generate call was sent

    def _generate(self, chats):
        self.calls.append(list(chats))
        out = []
        for c in chats:
            a = self.answer(c)
            if isinstance(a, Exception):
                raise a
            out.append(a if isinstance(a, Generation) else Generation(a, "stop"))
        return out


def scripted(role="text", answer=None, batch_size=4, options=None, generation=None) -> ScriptedAnnotator:
    ann = build_annotator(ScriptedAnnotator, role, "scripted-model", batch_size=batch_size, options=options,
                          generation=generation)
    if answer is not None:
        ann.answer = answer
    return ann
