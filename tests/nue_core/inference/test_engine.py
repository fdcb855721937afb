"""Continuous batching: every request decodes exactly as ``SpeechLM.generate`` decodes it alone."""

from __future__ import annotations

import threading

import pytest
import torch

from nue_core.composer import compose
from nue_core.generation import GenerationConfig
from nue_core.inference.engine import Engine, EngineLimits, QueueFull
from nue_core.inference.engine_background import BackgroundEngine, EngineStopped
from tests.conftest import make_audio, tiny_config

SECONDS = [0.9, 0.35, 0.6, 0.5, 0.3, 0.75]


def _model(bridge: str = "conv", decoder: str = "gpt-neox"):
    torch.manual_seed(0)
    model = compose(tiny_config(bridge=bridge, decoder=decoder)).eval()
    with torch.no_grad():  # sharper heads: outputs vary in length and content (as test_generation)
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
        if getattr(model.bridge, "ctc_head", None) is not None:
            model.bridge.ctc_head.weight.mul_(6.0)
    return model


def _clips(seed: int = 1, seconds=SECONDS) -> list[torch.Tensor]:
    wave, lens = make_audio(seconds, seed=seed)
    return [wave[i, : lens[i]] for i in range(len(seconds))]


def _alone(model, clips, cfg) -> list[list[int]]:
    return [model.generate(c[None], torch.tensor([len(c)]), cfg)[0] for c in clips]


def _check_cache_is_tight(engine: Engine) -> None:
    """The cache holds no more positions than the longest live row needs."""
    rows = engine._rows
    if rows is None:
        return
    assert rows.width == int(rows.lengths().max())
    assert rows.state.cache.get_seq_length() == rows.width  # the decoder's own cache agrees
    stats = engine.stats()
    assert stats.running_rows == rows.count <= engine.limits.max_rows


def _staggered(engine: Engine, clips) -> list:
    """Submit clips at different steps (some join mid-decode), step to the end."""
    handles, pending = [], list(clips)
    schedule = [2, 0, 1, 0, 0, 1, 0, 2]  # clips submitted before each step
    step = 0
    while pending or engine.has_work():
        for _ in range(schedule[step] if step < len(schedule) else len(pending)):
            if pending:
                handles.append(engine.submit(pending.pop(0)))
        engine.step()
        _check_cache_is_tight(engine)
        step += 1
    assert all(h.done and h.error is None for h in handles)
    return handles


CONFIGS = {
    "greedy": ("conv", GenerationConfig(repetition_limit=0)),
    "greedy-repetition-guard": ("conv", GenerationConfig(repetition_limit=2, min_new_tokens=4)),
    # limits from each clip's seconds (4 per second + 4): mixed lengths even where no eos wins
    "beam3": ("conv", GenerationConfig(num_beams=3, repetition_limit=0, extra_tokens=4)),
    "ctc-greedy": ("conv+ctc", GenerationConfig(repetition_limit=0, ctc_weight=0.5, ctc_candidates=16, extra_tokens=4)),
    "ctc-beam3": ("conv+ctc", GenerationConfig(repetition_limit=0, ctc_weight=0.5, ctc_candidates=16, extra_tokens=4,
                                               num_beams=3)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_staggered_requests_equal_decoding_each_alone(name):
    bridge, cfg = CONFIGS[name]
    model = _model(bridge)
    clips = _clips(seed=4 if "ctc" in name else 1)
    want = _alone(model, clips, cfg)
    assert len({len(w) for w in want}) > 1  # mixed lengths: some finish early, others join later
    engine = Engine(model, cfg)
    handles = _staggered(engine, clips)
    assert [h.result.ids for h in handles] == want
    assert engine.stats().running_rows == 0 and engine._rows is None
    if "ctc" in name:
        assert want != _alone(model, clips, GenerationConfig(repetition_limit=0, extra_tokens=4))  # CTC mattered
        res = handles[0].result
        assert res.ctc_log_probs.shape == (res.ctc_length, model.tokenizer.vocab_size + 1)
        assert torch.allclose(res.ctc_log_probs.exp().sum(-1), torch.ones(res.ctc_length), atol=1e-4)
    frames = model.encoder.output_lengths(torch.tensor([len(c) for c in clips])).tolist()
    assert [h.result.encoder_frames for h in handles] == frames


def test_max_rows_is_respected_and_results_unchanged():
    model = _model()
    cfg = GenerationConfig(num_beams=2, repetition_limit=0, max_new_tokens=8)
    clips = _clips(seed=2)
    engine = Engine(model, cfg, EngineLimits(max_rows=4, max_prefill=1))
    handles = [engine.submit(c) for c in clips]
    seen = []
    while engine.has_work():
        engine.step()
        seen.append(engine.stats().running_rows)
        _check_cache_is_tight(engine)
    assert max(seen) == 4  # two beam requests at a time, never three
    assert [h.result.ids for h in handles] == _alone(model, clips, cfg)


def test_max_cached_tokens_holds_back_admission():
    model = _model()
    cfg = GenerationConfig(repetition_limit=0, max_new_tokens=6)
    clips = _clips(seed=2)
    engine = Engine(model, cfg)
    costs = [engine._new_handle(c, None).cost for c in clips]
    budget = 2 * min(costs) - 1  # any one request fits, no two together
    assert max(costs) <= budget
    engine = Engine(model, cfg, EngineLimits(max_cached_tokens=budget))
    handles = [engine.submit(c) for c in clips]
    while engine.has_work():
        engine.step()
        assert engine.stats().running_requests <= 1  # no two requests' reservations fit together
        assert engine.stats().cached_tokens <= engine.limits.max_cached_tokens
    assert [h.result.ids for h in handles] == _alone(model, clips, cfg)


def test_cancel_frees_rows_and_leaves_the_others_unchanged():
    model = _model()
    cfg = GenerationConfig(repetition_limit=0, min_new_tokens=30, max_new_tokens=30)  # all run 30 steps
    clips = _clips(seed=3)[:4]
    engine = Engine(model, cfg)
    handles = [engine.submit(c) for c in clips]
    queued = engine.submit(clips[0])
    engine.step()
    engine.step()
    assert engine.stats().running_rows == 5
    engine.cancel(handles[1])
    engine.cancel(queued)
    finished = engine.step()
    assert handles[1] in finished and queued in finished
    assert handles[1].cancelled and handles[1].done and handles[1].result is None
    assert engine.stats().running_rows == 3
    while engine.has_work():
        engine.step()
    keep = [0, 2, 3]
    assert [handles[i].result.ids for i in keep] == _alone(model, [clips[i] for i in keep], cfg)


def test_queue_full_beyond_max_queued_seconds():
    model = _model()
    engine = Engine(model, GenerationConfig(max_new_tokens=2), EngineLimits(max_queued_seconds=1.0))
    clips = _clips(seconds=[0.6, 0.3, 0.3])
    engine.submit(clips[0])
    engine.submit(clips[1])
    with pytest.raises(QueueFull):
        engine.submit(clips[2])
    assert engine.stats().queued_requests == 2 and abs(engine.stats().queued_seconds - 0.9) < 1e-6
    engine.step()  # admission drains the queue
    engine.submit(clips[2])
    results = engine.run(_clips(seconds=[0.6, 0.6, 0.6]))  # run() submits as the queue drains
    assert len(results) == 3 and all(r is not None for r in results)


@pytest.mark.parametrize("beams", [1, 3])
def test_on_token_sees_exactly_the_final_ids_in_order(beams):
    model = _model()
    cfg = GenerationConfig(num_beams=beams, repetition_limit=0, max_new_tokens=10)
    clips = _clips(seed=5)[:3]
    engine = Engine(model, cfg)
    seen = {i: [] for i in range(3)}
    handles = [engine.submit(c, on_token=seen[i].append) for i, c in enumerate(clips)]
    while engine.has_work():
        engine.step()
    assert [seen[i] for i in range(3)] == [h.result.ids for h in handles] == _alone(model, clips, cfg)


def test_background_engine_serves_concurrent_submits():
    model = _model()
    cfg = GenerationConfig(repetition_limit=0, max_new_tokens=12)
    clips = _clips(seed=6)
    want = _alone(model, clips, cfg)
    bg = BackgroundEngine(Engine(model, cfg, EngineLimits(max_rows=3)))
    bg.start()
    futures: dict[int, object] = {}

    def client(indices):
        for i in indices:
            futures[i] = bg.submit(clips[i])

    threads = [threading.Thread(target=client, args=(range(j, len(clips), 3),)) for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [futures[i].result(timeout=120).ids for i in range(len(clips))] == want
    late = [bg.submit(c) for c in clips[:3]]
    bg.stop(drain=True, timeout=120)  # in-flight work finishes before the thread ends
    assert [f.result(timeout=0).ids for f in late] == want[:3]
    with pytest.raises(EngineStopped):
        bg.submit(clips[0])


def test_a_decoding_failure_fails_only_its_requests_and_serving_goes_on():
    model = _model()
    cfg = GenerationConfig(repetition_limit=0, min_new_tokens=20, max_new_tokens=20)
    clips = _clips(seed=7)[:4]
    want = _alone(model, clips, cfg)
    forward = model.decoder.forward
    armed = threading.Event()

    def flaky(embeds, *args, **kwargs):
        if embeds.shape[1] > 1 and armed.is_set():  # the next prefill (admission) fails, once
            armed.clear()
            raise RuntimeError("injected")
        return forward(embeds, *args, **kwargs)

    model.decoder.forward = flaky
    started = threading.Event()
    bg = BackgroundEngine(Engine(model, cfg))
    bg.start()
    first = [bg.submit(c, on_token=lambda t: started.set()) for c in clips[:2]]
    assert started.wait(60)
    armed.set()
    poisoned = bg.submit(clips[2])
    with pytest.raises(RuntimeError, match="injected"):
        poisoned.result(timeout=60)
    after = bg.submit(clips[3])
    assert [f.result(timeout=60).ids for f in first] == want[:2]
    assert after.result(timeout=60).ids == want[3]
    bg.stop()


def test_a_failed_decode_step_fails_the_running_requests_only():
    model = _model()
    cfg = GenerationConfig(repetition_limit=0, max_new_tokens=6)
    clips = _clips(seed=8)[:3]
    engine = Engine(model, cfg)
    forward = model.decoder.forward
    calls = {"n": 0}

    def flaky(embeds, *args, **kwargs):
        if embeds.shape[1] == 1:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("step failed")
        return forward(embeds, *args, **kwargs)

    model.decoder.forward = flaky
    doomed = [engine.submit(c) for c in clips[:2]]
    while not all(h.done for h in doomed):
        engine.step()
    assert all(isinstance(h.error, RuntimeError) for h in doomed) and engine._rows is None
    ok = engine.submit(clips[2])
    while engine.has_work():
        engine.step()
    model.decoder.forward = forward
    assert ok.error is None and ok.result.ids == _alone(model, clips[2:], cfg)[0]


def test_kit_checks_cache_joining_of_hf_and_toy_decoders_and_catches_a_wrong_trim():
    from nue_core.testing import ConformanceError
    from nue_core.testing.decoder import _left_pad
    from nue_core.testing.kv_cache import check_cache_joining
    from nue_core.testing.toys import ToyDecoder

    toy = ToyDecoder().eval()
    for decoder in (_model(decoder="llama").decoder, toy):
        items = [torch.randint(0, decoder.vocab_size, (n,)) for n in (5, 8, 3)]
        with torch.no_grad():
            check_cache_joining(decoder, *_left_pad(items, 0), atol=1e-5)
    toy.trim_cache = lambda cache, count: cache[:, count:].roll(1, dims=1)  # right shape, positions shuffled
    with pytest.raises(ConformanceError, match="trim_cache"), torch.no_grad():
        check_cache_joining(toy, *_left_pad(items, 0), atol=1e-5)
