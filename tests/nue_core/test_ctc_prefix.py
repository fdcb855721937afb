"""CTC prefix scores against brute-force enumeration of alignments; joint decoding invariants."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nue_core.ctc_prefix import CTCPrefixScorer

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
