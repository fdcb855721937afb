"""Resource limits: an out-of-memory batch is halved and retried (with a logged warning), and
one failing item never fails the rest of its batch."""

import torch

from nue_core.generation import GenerationConfig
from nue_core.inference import Transcriber
from tests.nue_core.test_transcribe import SR, _noise, model  # noqa: F401  (module-scoped fixture)


def test_out_of_memory_halves_the_batch(model, monkeypatch):
    real = model.generate
    sizes = []

    def small_memory(waves, lengths, config=None):
        sizes.append(waves.shape[0])
        if waves.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(waves, lengths, config)

    monkeypatch.setattr(model, "generate", small_memory)
    tr = Transcriber(model, batch_size=8, generation=GenerationConfig(max_new_tokens=3))
    results = tr.transcribe([_noise(0.3 + 0.05 * i, i) for i in range(7)])
    assert all(r.ok for r in results) and tr.batch_size == 2
    assert sizes == [7, 4, 2, 2, 2, 1]  # 7 fails, half (4) fails, then 2 at a time


def test_a_failing_item_does_not_fail_its_batch(model, monkeypatch):
    real = model.generate
    bad_length = int(0.55 * SR)

    def flaky(waves, lengths, config=None):
        if bad_length in lengths.tolist():
            raise ValueError("boom")
        return real(waves, lengths, config)

    monkeypatch.setattr(model, "generate", flaky)
    clips = [_noise(0.3, 1), _noise(0.55, 2), _noise(0.4, 3)]
    results = Transcriber(model, batch_size=3, generation=GenerationConfig(max_new_tokens=3)).transcribe(clips)
    assert [r.ok for r in results] == [True, False, True]
    assert "ValueError: boom" in results[1].error and "<array 1>" in results[1].error
