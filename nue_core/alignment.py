"""CTC forced alignment: where in time each token of a known transcript was emitted.

Shape legend: b = batch, t = frames, c = CTC classes (vocabulary + blank), n = tokens,
s = 2n + 1 CTC states (blank, tok_1, blank, tok_2, ..., tok_n, blank).

Viterbi over the standard CTC topology: from a state a path may stay, move to the next state, or
skip the blank between two tokens when the tokens differ (``a a`` needs a blank between them).
The recursion is vectorised over the batch and the states; only the frames are a Python loop.
``torchaudio.functional.forced_align`` does the same but torchaudio is not always loadable here.

An item whose tokens cannot fit its frames (more tokens, plus one blank per repeated pair, than
frames; or every alignment has probability zero) has no alignment: the functions return ``None``
for it rather than raising, so a batch is never lost to one item and the caller can say "no word
times for this file". Inputs that are wrong (shapes, a token id out of range or equal to the
blank) raise ``AlignmentError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nue_core.errors import NueError


class AlignmentError(NueError, ValueError):
    """The inputs of an alignment are malformed (shapes, token ids)."""


@dataclass(frozen=True)
class TokenSpan:
    """One token's place in the frames.

    Attributes:
        token: token id.
        start_frame: first frame emitting the token.
        end_frame: one past its last frame (exclusive), so ``end_frame - start_frame >= 1``.
        confidence: exp of the mean log-probability of the token over its frames (in (0, 1]).
    """

    token: int
    start_frame: int
    end_frame: int
    confidence: float


def forced_align(
    log_probs: torch.Tensor, tokens: torch.Tensor | list[int], blank: int
) -> list[TokenSpan] | None:
    """Best CTC alignment of ``tokens`` to the frames of one item.

    Args:
        log_probs: (t, c) log-probabilities (``log_softmax`` of the CTC logits, not raw logits).
        tokens: (n,) token ids, none equal to ``blank``; empty means the item is all blank.
        blank: the blank class (nue-asr heads: the decoder vocabulary size V, the last class).

    Returns:
        n spans in token order, or None when no alignment exists (see the module docstring).
    """
    if log_probs.dim() != 2:
        raise AlignmentError(f"log_probs must be (frames, classes), got shape {tuple(log_probs.shape)}")
    ids = torch.as_tensor(tokens, dtype=torch.long).reshape(-1).tolist()
    lengths = torch.tensor([log_probs.shape[0]])
    return align_batch(log_probs[None], lengths, [ids], blank)[0]


def align_batch(
    log_probs: torch.Tensor, lengths: torch.Tensor, tokens: list[list[int]], blank: int
) -> list[list[TokenSpan] | None]:
    """Best CTC alignment of each item's tokens; equal to ``forced_align`` item by item.

    Args:
        log_probs: (b, t, c) log-probabilities; frames past ``lengths`` are ignored.
        lengths: (b,) valid frames.
        tokens: b lists of token ids (blank-free).
        blank: the blank class.

    Returns:
        b entries: the item's spans, or None when the item has no alignment.
    """
    _check(log_probs, lengths, tokens, blank)
    b, t, _ = log_probs.shape
    lengths_list = [int(x) for x in lengths.tolist()]
    if b == 0:
        return []
    if t == 0:
        return [[] if not ids else None for ids in tokens]
    lp = log_probs.to(torch.promote_types(log_probs.dtype, torch.float32))
    paths, scores = _viterbi(lp, lengths, tokens, blank)
    out: list[list[TokenSpan] | None] = []
    for i, ids in enumerate(tokens):
        if lengths_list[i] == 0 or not bool(torch.isfinite(scores[i])):
            out.append([] if not ids and lengths_list[i] == 0 else None)
            continue
        out.append(_spans(paths[i, : lengths_list[i]].tolist(), ids, lp[i]))
    return out


def _check(log_probs: torch.Tensor, lengths: torch.Tensor, tokens: list[list[int]], blank: int) -> None:
    if log_probs.dim() != 3:
        raise AlignmentError(f"log_probs must be (batch, frames, classes), got {tuple(log_probs.shape)}")
    b, t, c = log_probs.shape
    if lengths.shape != (b,) or len(tokens) != b:
        raise AlignmentError(f"batch of {b} needs lengths (b,) and b token lists; got "
                             f"lengths {tuple(lengths.shape)} and {len(tokens)} token lists")
    if b and (int(lengths.min()) < 0 or int(lengths.max()) > t):
        raise AlignmentError(f"lengths must lie in [0, {t}], got {lengths.tolist()}")
    if not 0 <= blank < c:
        raise AlignmentError(f"blank {blank} is not a class of the {c} in log_probs")
    for i, ids in enumerate(tokens):
        bad = [x for x in ids if not 0 <= x < c or x == blank]
        if bad:
            raise AlignmentError(f"item {i}: token ids {bad[:5]} are out of [0, {c}) or equal the blank "
                                 f"{blank}; strip special tokens before aligning")


def _viterbi(
    lp: torch.Tensor, lengths: torch.Tensor, tokens: list[list[int]], blank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, t, c) log-probs -> (b, t) best state per frame and (b,) best path scores (-inf: none)."""
    b, t, _ = lp.shape
    device = lp.device
    n_max = max((len(ids) for ids in tokens), default=0)
    s = 2 * n_max + 1
    # Padded states hold blanks: they are only reachable from lower states and never chosen as a
    # final state, so they need no mask.
    ext = torch.full((b, s), blank, dtype=torch.long, device=device)
    for i, ids in enumerate(tokens):
        if ids:
            ext[i, 1 : 2 * len(ids) : 2] = torch.tensor(ids, device=device)
    skip_ok = torch.zeros(b, s, dtype=torch.bool, device=device)
    # (b, s): a token state may be entered from two states back only past a different token.
    skip_ok[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    emit = lp.gather(2, ext[:, None, :].expand(b, t, s))  # (b, t, s)
    neg = torch.tensor(float("-inf"), dtype=lp.dtype, device=device)
    alpha = torch.full((b, s), float("-inf"), dtype=lp.dtype, device=device)
    alpha[:, 0] = emit[:, 0, 0]
    if s > 1:
        alpha[:, 1] = emit[:, 0, 1]
    back = torch.zeros(t, b, s, dtype=torch.uint8, device=device)  # 0 stay, 1 from s-1, 2 from s-2
    lengths = lengths.to(device)
    for f in range(1, t):
        prev1 = torch.cat([neg.expand(b, 1), alpha[:, :-1]], 1)
        prev2 = torch.cat([neg.expand(b, 2), alpha[:, :-2]], 1)[:, :s]
        prev2 = torch.where(skip_ok, prev2, neg)
        best, arg = torch.stack([alpha, prev1, prev2], -1).max(-1)  # (b, s)
        back[f] = arg.to(torch.uint8)
        # Items already past their last frame keep their final alpha for the end-state choice.
        alpha = torch.where((f < lengths)[:, None], best + emit[:, f], alpha)
    n = torch.tensor([len(ids) for ids in tokens], device=device)
    last = alpha.gather(1, (2 * n)[:, None]).squeeze(1)  # (b,) ends in the final blank
    before = alpha.gather(1, (2 * n - 1).clamp_min(0)[:, None]).squeeze(1)  # ... or the last token
    before = torch.where(n > 0, before, neg)
    state = torch.where(before > last, 2 * n - 1, 2 * n)
    scores = torch.maximum(last, before)
    paths = torch.zeros(b, t, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    for f in range(t - 1, -1, -1):
        active = f < lengths
        paths[:, f] = torch.where(active, state, 0)
        step = back[f, rows, state].long()
        state = torch.where(active & (f > 0), state - step, state)
    return paths, scores


def _spans(path: list[int], ids: list[int], lp: torch.Tensor) -> list[TokenSpan]:
    """Frame-wise states (t,) -> one span per token (odd state 2k+1 is token k)."""
    bounds: dict[int, list[int]] = {}
    for f, state in enumerate(path):
        if state % 2:
            bounds.setdefault(state // 2, [f, f + 1])[1] = f + 1
    spans = []
    for k, token in enumerate(ids):
        start, end = bounds[k]
        mean = lp[start:end, token].mean()
        spans.append(TokenSpan(token, start, end, float(mean.exp())))
    return spans
