"""CTC prefix scores against brute-force enumeration of alignments; joint decoding invariants."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nue_core.ctc_prefix import CTCPrefixScorer, CTCPrefixState

BLANK, EOS = 3, 2  # 3 CTC labels {0, 1, 2} + blank; token 2 doubles as the decoder's eos


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, prev = [], None
    for s in path:
        if s != prev and s != BLANK:
            out.append(s)
        prev = s
    return tuple(out)


def _brute(log_probs: torch.Tensor, frames: int, prefix: tuple[int, ...], exact: bool) -> float:
    """log sum of P(alignment) over alignments whose labels start with (or equal) ``prefix``."""
    total = 0.0
    for path in itertools.product(range(BLANK + 1), repeat=frames):
        labels = _collapse(path)
        if (labels == prefix) if exact else labels[: len(prefix)] == prefix:
            total += math.exp(sum(float(log_probs[t, s]) for t, s in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def _walk(scorer: CTCPrefixScorer, prefix: tuple[int, ...]):
    state = scorer.initial_state()
    rows = torch.arange(state.psi.shape[0])
    for token in prefix:
        tokens = torch.full((len(rows), 1), token)
        psi, r_n, r_b = scorer.extend(state, tokens)
        state = CTCPrefixScorer.advance(state, (tokens, psi, r_n, r_b), rows, tokens[:, 0])
    return state


@pytest.mark.parametrize("prefix", [(), (0,), (1, 1), (0, 1, 0), (1, 0, 1, 1)])
def test_prefix_and_end_scores_match_enumeration(prefix: tuple[int, ...]) -> None:
    torch.manual_seed(len(prefix))
    logits = torch.randn(2, 6, BLANK + 1) * 2
    lengths = torch.tensor([6, 4])  # the second clip ends early: its padding frames must not count
    scorer = CTCPrefixScorer(logits, lengths, BLANK, eos=99, weight=0.5)
    log_probs = logits.log_softmax(-1)
    state = _walk(scorer, prefix)
    for row, frames in enumerate(lengths.tolist()):
        expected_psi = 0.0 if not prefix else _brute(log_probs[row], frames, prefix, exact=False)
        assert state.psi[row].item() == pytest.approx(expected_psi, abs=1e-4)
        assert scorer._end_score(state)[row].item() == pytest.approx(_brute(log_probs[row], frames, prefix, exact=True), abs=1e-4)


def test_joint_scores_combine_decoder_and_ctc_gain() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 5, BLANK + 1)
    scorer = CTCPrefixScorer(logits, torch.tensor([5]), BLANK, eos=EOS, weight=0.3, candidates=4)
    llm = torch.randn(1, 4)  # decoder vocabulary of 4 (token 3 is no CTC label)
    state = _walk(scorer, (1,))
    scores, _ = scorer.score(state, llm)
    llm_logp = llm.log_softmax(-1)[0]
    log_probs = logits.log_softmax(-1)[0]
    prev = _brute(log_probs, 5, (1,), exact=False)
    for token in (0, 1):
        gain = _brute(log_probs, 5, (1, token), exact=False) - prev
        assert scores[0, token].item() == pytest.approx(0.7 * llm_logp[token].item() + 0.3 * gain, abs=1e-4)
    end_gain = _brute(log_probs, 5, (1,), exact=True) - prev
    assert scores[0, EOS].item() == pytest.approx(0.7 * llm_logp[EOS].item() + 0.3 * end_gain, abs=1e-4)
    assert scores[0, 3].item() == float("-inf")  # not a CTC label: the CTC rules it out


def test_rows_without_frames_fall_back_to_the_decoder() -> None:
    scorer = CTCPrefixScorer(torch.randn(2, 3, BLANK + 1), torch.tensor([3, 0]), BLANK, eos=EOS, weight=0.5,
                             candidates=4)
    llm = torch.randn(2, 4)
    scores, _ = scorer.score(scorer.initial_state(), llm)
    assert torch.allclose(scores[1], llm[1].log_softmax(-1))


def test_a_batch_without_any_frame_scores_with_the_decoder_alone() -> None:
    """Clips too short for a CTC frame (a batch of only such clips): no IndexError, no CTC say."""
    from nue_core.ctc_prefix import CTCPrefixScorer

    scorer = CTCPrefixScorer(torch.zeros(2, 0, 5), torch.zeros(2, dtype=torch.long), blank=4, eos=3, weight=0.5,
                             candidates=2)
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 0.0]])
    joint, _ = scorer.score(scorer.initial_state(), logits)
    assert joint.argmax(dim=-1).tolist() == logits.argmax(dim=-1).tolist()


# --- the vectorised recursion against the frame loop it replaced ---------------------------------

NEG_INF = float("-inf")


def _loop_extend(scorer: CTCPrefixScorer, state, tokens: torch.Tensor):
    """Reference: ``CTCPrefixScorer.extend`` as a Python loop over frames (the implementation the
    vectorised one replaced), in the log-probs' dtype."""
    log_probs = scorer.log_probs
    rows, frames = log_probs.shape[:2]
    in_ctc = (tokens >= 0) & (tokens < scorer.ctc_classes) & (tokens != scorer.blank)
    safe = torch.where(in_ctc, tokens, 0)
    x = log_probs.gather(2, safe[:, None, :].expand(rows, frames, safe.shape[1]))
    x = x.masked_fill(~in_ctc[:, None, :], NEG_INF).transpose(1, 2)  # (r, c, t)
    x_blank = log_probs[:, :, scorer.blank][:, None, :]
    repeat = (tokens == state.last[:, None])[..., None]
    phi = torch.logaddexp(state.r_blank[:, None, :].to(x.dtype),
                          state.r_nonblank[:, None, :].to(x.dtype).masked_fill(repeat, NEG_INF))
    r_n = torch.full_like(x, NEG_INF)
    r_b = torch.full_like(x, NEG_INF)
    empty = (state.last < 0)[:, None]
    r_n[:, :, 0] = torch.where(empty, x[:, :, 0], torch.full_like(x[:, :, 0], NEG_INF))
    psi = r_n[:, :, 0].clone()
    for t in range(1, frames):
        r_n[:, :, t] = torch.logaddexp(r_n[:, :, t - 1], phi[:, :, t - 1]) + x[:, :, t]
        r_b[:, :, t] = torch.logaddexp(r_b[:, :, t - 1], r_n[:, :, t - 1]) + x_blank[:, :, t]
        psi = torch.logaddexp(psi, phi[:, :, t - 1] + x[:, :, t])
    return psi, r_n, r_b


def _as_double(scorer: CTCPrefixScorer) -> CTCPrefixScorer:
    out = object.__new__(CTCPrefixScorer)
    out.__dict__.update(scorer.__dict__)
    out.log_probs = scorer.log_probs.double()
    return out


def _assert_same(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> None:
    """-inf exactly where ``want`` is -inf, elsewhere |got - want| <= atol + rtol |want|."""
    assert torch.equal(torch.isneginf(got), torch.isneginf(want))
    assert torch.isfinite(got[~torch.isneginf(want)]).all()
    finite = torch.isfinite(want)
    err = (got.double() - want.double())[finite].abs()
    bound = atol + rtol * want.double()[finite].abs()
    assert (err <= bound).all(), f"max excess {(err - bound).max().item():.3g}"


def _case(name: str) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """(logits (r, t, v + 1), lengths (r,), blank, the labels (r, n) the prefixes walk) of one case."""
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    if name == "padded":  # rows shorter than the frames held, one without any frame
        logits, lengths = torch.randn(5, 30, 6, generator=gen) * 3, torch.tensor([30, 17, 1, 0, 29])
    elif name == "long":
        # 16 s of a peaky CTC head reading a transcript: the right prefix keeps a log-prob of a few
        # nats while every other label's cumulative log-probs reach -1e4 (float64 cancellation).
        labels = torch.randint(0, 5, (3, 60), generator=gen)
        path = torch.full((3, 800), 5)
        path[:, 10:730:12] = labels  # each label on one frame, blanks between (repeats stay apart)
        logits = torch.randn(3, 800, 6, generator=gen) + 25 * torch.nn.functional.one_hot(path, 6)
        return logits, torch.tensor([800, 790, 799]), 5, labels
    elif name == "gaps":  # classes with probability 0 inside clips cut the paths through those frames
        logits = torch.randn(4, 40, 6, generator=gen) * 2
        logits[torch.rand(4, 40, 6, generator=gen) < 0.15] = NEG_INF
        logits[..., 5] = logits[..., 5].nan_to_num(neginf=0.0)  # blank stays possible: no all -inf frame
        logits[1, 3:9, :5] = NEG_INF  # only blank for 6 frames
        logits[2, 5, :2] = torch.tensor([0.0, NEG_INF])  # no blank at frame 5: the empty prefix ends there
        logits[2, 5, 5] = NEG_INF
        lengths = torch.tensor([40, 40, 25, 33])
    else:  # "short"
        logits, lengths = torch.randn(3, 12, 6, generator=gen) * 2, torch.tensor([12, 12, 9])
    return logits, lengths, 5, torch.randint(0, 5, (logits.shape[0], 4), generator=gen)  # repeats now and then


@pytest.mark.parametrize("name", ["short", "padded", "long", "gaps"])
def test_vectorised_extend_matches_the_frame_loop(name: str) -> None:
    """Along prefixes (the empty one, repeated labels, the transcript of a peaky head), every
    candidate's psi and forward variables equal the frame loop's: -inf at the same places, float32
    rounding apart."""
    logits, lengths, blank, labels = _case(name)
    scorer = CTCPrefixScorer(logits, lengths, blank, eos=99, weight=0.5)
    assert scorer.gaps == (name == "gaps")
    rows = logits.shape[0]
    state = scorer.initial_state()
    # every label, blank, eos and ids outside the CTC classes
    tokens = torch.tensor([0, 1, 2, 3, 4, 5, 99, -1])[None].repeat(rows, 1)
    for step in range(min(labels.shape[1], 6) + 1):
        got = scorer.extend(state, tokens)
        want = _loop_extend(_as_double(scorer), state, tokens)  # float64: the exact values
        want32 = _loop_extend(scorer, state, tokens)  # what the library computed before
        for g, w, w32 in zip(got, want, want32):
            assert g.dtype == torch.float32 and g.shape == w.shape
            _assert_same(g, w, rtol=2e-6, atol=1e-5)
            _assert_same(g, w32, rtol=2e-5, atol=1e-4)
        if step < labels.shape[1]:
            state = CTCPrefixScorer.advance(state, (tokens, *got), torch.arange(rows), labels[:, step])
    if name == "long":  # the transcript stays likely: the cancellation above was real
        assert (state.psi > -50).all()


def test_vectorised_extend_of_rows_the_ctc_rules_out() -> None:
    """A state whose prefix already has probability 0 (psi = -inf everywhere) extends to -inf only."""
    scorer = CTCPrefixScorer(torch.randn(2, 10, 4), torch.tensor([10, 6]), BLANK, eos=99, weight=0.5)
    state = scorer.initial_state()
    dead = CTCPrefixState(torch.full_like(state.r_blank, NEG_INF), torch.full_like(state.r_blank, NEG_INF),
                       torch.full_like(state.psi, NEG_INF), torch.tensor([0, 1]))
    psi, r_n, r_b = scorer.extend(dead, torch.tensor([[0, 1, 2], [1, 0, 2]]))
    assert torch.isneginf(psi).all() and torch.isneginf(r_n).all() and torch.isneginf(r_b).all()


def test_concatenated_scorers_keep_the_gap_handling() -> None:
    """A scorer joining one clip with a zero-probability class (the engine's running batch) scores
    that clip as its own scorer does."""
    with_gap = torch.randn(1, 8, 4)
    with_gap[0, 2, 0] = NEG_INF
    alone = CTCPrefixScorer(with_gap, torch.tensor([8]), BLANK, eos=99, weight=0.5)
    plain = CTCPrefixScorer(torch.randn(1, 5, 4), torch.tensor([5]), BLANK, eos=99, weight=0.5)
    joined = CTCPrefixScorer.concat([plain, alone])
    assert joined.gaps
    tokens = torch.tensor([[0, 1]])
    want = alone.extend(alone.initial_state(), tokens)
    state = CTCPrefixState.concat([plain.initial_state(), alone.initial_state()])
    got = joined.extend(state, tokens.repeat(2, 1))
    for g, w in zip(got, want):
        _assert_same(g[1:, ..., : w.shape[-1]], w, rtol=1e-6, atol=1e-6)
