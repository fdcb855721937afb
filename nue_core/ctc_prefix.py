"""CTC prefix scores for joint CTC/LLM decoding (Watanabe et al., "Hybrid CTC/Attention
Architecture for End-to-End Speech Recognition", IEEE JSTSP 2017, algorithm 2).

When the bridge has a CTC head over the decoder's vocabulary, the decoder's next-token
log-probabilities are combined with how much each candidate raises the CTC probability of the
prefix decoded so far:

    score(prefix + c) = (1 - w) * log p_llm(c | prefix) + w * (psi(prefix + c) - psi(prefix))

where psi is the CTC prefix log-probability (over all alignments whose labels start with the
prefix). For eos, psi is the probability that the whole clip reads exactly the prefix. The CTC
head is monotonic and sees every frame, so it vetoes skipped or repeated words; a small decoder
trained from scratch learns to read the speech vectors much later than the CTC head learns to
label them.

Only ``candidates`` tokens per row (the decoder's best) are scored, as ESPnet's pre-beam does:
the forward recursion costs O(frames) per candidate and decode step.

Shape legend: r = hypothesis rows (batch x beams), t = CTC frames, v = decoder vocabulary,
c = candidates per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nue_core.lengths import length_mask

NEG_INF = float("-inf")


@dataclass
class CTCPrefixState:
    """Forward variables of each row's current prefix.

    Attributes:
        r_nonblank: (r, t) log-prob of the prefix with frame t emitting its last label.
        r_blank: (r, t) log-prob of the prefix with frame t emitting blank.
        psi: (r,) CTC prefix log-prob of the prefix (0 for the empty prefix).
        last: (r,) last label of the prefix, -1 for the empty prefix.
    """

    r_nonblank: torch.Tensor
    r_blank: torch.Tensor
    psi: torch.Tensor
    last: torch.Tensor

    def select(self, rows: torch.Tensor) -> "CTCPrefixState":
        """The states of ``rows`` (r',) (beam reordering)."""
        return CTCPrefixState(self.r_nonblank[rows], self.r_blank[rows], self.psi[rows], self.last[rows])

    @staticmethod
    def concat(states: list["CTCPrefixState"]) -> "CTCPrefixState":
        """The rows of ``states`` in order, their frames padded with -inf to the longest (t).

        -inf past a row's own frames is what the recursion computes there itself, so padding
        changes no row's scores (the continuous-batching engine joins rows of different clips).
        """
        frames = max(s.r_blank.shape[1] for s in states)
        return CTCPrefixState(torch.cat([_pad_frames(s.r_nonblank, frames) for s in states]),
                              torch.cat([_pad_frames(s.r_blank, frames) for s in states]),
                              torch.cat([s.psi for s in states]), torch.cat([s.last for s in states]))

    def trim(self, frames: int) -> "CTCPrefixState":
        """Only the first ``frames`` frames (past every row's clip the variables are -inf)."""
        return CTCPrefixState(self.r_nonblank[:, :frames], self.r_blank[:, :frames], self.psi, self.last)


def _linear_scan(start: torch.Tensor, log_x: torch.Tensor, gaps: bool) -> torch.Tensor:
    """The recursion y[t] = (y[t-1] + exp(start[t])) * exp(log_x[t]) of the forward variables, in
    log space and for all frames at once: y[t] = log sum_{s <= t} exp(start[s] + log_x[s..t] summed).

    With X the cumulative sum of log_x that is X[t] + logcumsumexp_s(start[s] - X[s-1]). X reaches
    -1e4 on long clips and the two terms cancel to a few nats, hence float64 for that part. A frame
    with log_x = -inf zeroes every path through it. Past a clip's end (a suffix of frames) only the
    result needs masking. Inside a clip (``gaps``) it restarts the sum: X steps down there by more
    than the starts span plus float64's exp range, so that earlier starts add exactly nothing, and
    frames with no finite start since the last such frame are -inf.

    Args:
        start: (r, c, t) log of what enters at frame t (-inf: nothing).
        log_x: (r, c or 1, t) log-probability of frame t's symbol.
        gaps: whether log_x may hold -inf before its last finite frame.

    Returns:
        (r, c, t) y, in start's dtype.
    """
    dead = torch.isneginf(log_x)
    start64 = start.double()
    gaps = gaps and start.numel() > 0  # amax of no rows would raise
    if gaps:
        finite = torch.isfinite(start64)
        known = start64.masked_fill(~finite, 0.0)
        step = known.amax() - known.amin() + 1000.0  # 1000 > 745 (float64 exp underflow) + log(t)
        cum = torch.where(dead, -step, log_x.double()).cumsum(dim=-1)
    else:
        cum = log_x.double().masked_fill(dead, 0.0).cumsum(dim=-1)
    before = torch.nn.functional.pad(cum[..., :-1], (1, 0))  # X[s - 1], 0 before frame 0
    y = (cum + torch.logcumsumexp(start64 - before, dim=-1)).to(start.dtype)
    if gaps:
        frame = torch.arange(log_x.shape[-1], device=log_x.device)
        last_start = torch.where(finite, frame, -1).cummax(dim=-1).values
        last_dead = torch.where(dead, frame, -1).cummax(dim=-1).values
        dead = dead | (last_start <= last_dead)
    return y.masked_fill(dead, NEG_INF)


def _pad_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """x (r, t, ...) padded with -inf along t to ``frames``."""
    if x.shape[1] == frames:
        return x
    pad = x.new_full((x.shape[0], frames - x.shape[1], *x.shape[2:]), NEG_INF)
    return torch.cat([x, pad], dim=1)


class CTCPrefixScorer:
    """Scores candidate next tokens of a batch of hypotheses against CTC log-probs.

    Args:
        ctc_logits: (r, t, v + 1) CTC logits of each row's clip (blank included).
        lengths: (r,) valid CTC frames per row.
        blank: index of the blank class.
        eos: decoder id of eos (scored as "the prefix is the whole transcript").
        weight: w in the formula above, in [0, 1].
        candidates: how many of the decoder's best tokens per row are scored.
    """

    def __init__(self, ctc_logits: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int,
                 weight: float, candidates: int = 8) -> None:
        log_probs = ctc_logits.float().log_softmax(dim=-1)  # (r, t, v + 1)
        if log_probs.shape[1] == 0:  # no row has a frame (clips too short): one masked frame keeps shapes valid
            log_probs = log_probs.new_zeros(log_probs.shape[0], 1, log_probs.shape[2])
        frames = log_probs.shape[1]
        self.lengths = lengths.to(log_probs.device).long()
        valid = length_mask(self.lengths, frames)  # (r, t)
        # Past a clip's end no label can be emitted: -inf keeps the recursion from running on.
        self.log_probs = log_probs.masked_fill(~valid[..., None], NEG_INF)
        self.blank, self.eos, self.weight, self.candidates = blank, eos, weight, candidates
        self.ctc_classes = log_probs.shape[-1] - 1
        self.has_frames = self.lengths > 0  # rows without frames fall back to the decoder alone
        # A class with probability 0 inside a clip (an -inf logit) cuts the recursion there: rare,
        # and it costs ``_linear_scan`` extra work, so it is looked for once here.
        self.gaps = bool((torch.isneginf(log_probs) & valid[..., None]).any())

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix: only blanks so far."""
        rows, frames = self.log_probs.shape[:2]
        r_blank = self.log_probs[:, :, self.blank].cumsum(dim=1)  # (r, t)
        return CTCPrefixState(torch.full_like(r_blank, NEG_INF), r_blank,
                              torch.zeros(rows, device=r_blank.device), torch.full((rows,), -1, device=r_blank.device,
                                                                                    dtype=torch.long))

    def expand(self, rows: torch.Tensor) -> "CTCPrefixScorer":
        """A scorer whose row i is this one's ``rows[i]`` (beam expansion of a batch)."""
        out = object.__new__(CTCPrefixScorer)
        out.__dict__.update(self.__dict__)
        out.log_probs, out.lengths, out.has_frames = self.log_probs[rows], self.lengths[rows], self.has_frames[rows]
        return out

    @staticmethod
    def concat(scorers: list["CTCPrefixScorer"]) -> "CTCPrefixScorer":
        """One scorer over the rows of ``scorers`` in order (same blank, eos, weight and candidates),
        frames padded with -inf to the longest; each row scores exactly as in its own scorer."""
        out = object.__new__(CTCPrefixScorer)
        out.__dict__.update(scorers[0].__dict__)
        frames = max(s.log_probs.shape[1] for s in scorers)
        out.log_probs = torch.cat([_pad_frames(s.log_probs, frames) for s in scorers])
        out.lengths = torch.cat([s.lengths for s in scorers])
        out.has_frames = torch.cat([s.has_frames for s in scorers])
        out.gaps = any(s.gaps for s in scorers)
        return out

    @property
    def frames(self) -> int:
        """t: frames held (the longest row's clip, or more)."""
        return int(self.log_probs.shape[1])

    def trim(self) -> "CTCPrefixScorer":
        """The same rows holding only as many frames as the longest row's clip needs (with
        ``CTCPrefixState.trim(scorer.frames)``: rows of long clips that left stop costing time)."""
        needed = int(self.lengths.max()) if len(self.lengths) else 0
        if needed >= self.frames:
            return self
        out = object.__new__(CTCPrefixScorer)
        out.__dict__.update(self.__dict__)
        out.log_probs = self.log_probs[:, : max(needed, 1)]
        return out

    def _end_score(self, state: CTCPrefixState) -> torch.Tensor:
        """(r,) log-prob that the clip reads exactly the prefix (the eos score)."""
        last_frame = (self.lengths - 1).clamp(min=0)[:, None]
        return torch.logaddexp(state.r_nonblank.gather(1, last_frame), state.r_blank.gather(1, last_frame))[:, 0]

    def extend(self, state: CTCPrefixState, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward variables and prefix scores of ``prefix + token`` for (r, c) candidate tokens.

        The forward recursion over frames is linear in probabilities: ``_linear_scan`` runs it as
        cumulative sums over the frame axis, with no Python loop over frames.

        Returns:
            psi (r, c), r_nonblank (r, c, t), r_blank (r, c, t). Tokens outside the CTC classes
            (and eos, handled by ``_end_score``) get psi = -inf.
        """
        rows, frames = self.log_probs.shape[:2]
        in_ctc = (tokens >= 0) & (tokens < self.ctc_classes) & (tokens != self.blank)
        safe = torch.where(in_ctc, tokens, 0)
        x = self.log_probs.gather(2, safe[:, None, :].expand(rows, frames, safe.shape[1]))  # (r, t, c)
        x = x.masked_fill(~in_ctc[:, None, :], NEG_INF).transpose(1, 2)  # (r, c, t)
        x_blank = self.log_probs[:, :, self.blank][:, None, :]  # (r, 1, t)
        # phi: the prefix ends before frame t+1 in a state from which the new label may start
        # (a repeated label needs a blank in between).
        repeat = (tokens == state.last[:, None])[..., None]  # (r, c, 1)
        phi = torch.logaddexp(state.r_blank[:, None, :],
                              state.r_nonblank[:, None, :].masked_fill(repeat, NEG_INF))  # (r, c, t)
        # The new label's first frame is t: after phi[t - 1], or at frame 0 for the empty prefix.
        empty = torch.where(state.last < 0, 0.0, NEG_INF)[:, None, None].expand(rows, x.shape[1], 1)  # (r, c, 1)
        start = torch.cat([empty, phi[:, :, :-1]], dim=2)  # (r, c, t)
        # r_n[t] = (r_n[t-1] + phi[t-1]) x[t];  r_b[t] = (r_b[t-1] + r_n[t-1]) x_blank[t] (probabilities).
        r_n = _linear_scan(start, x, self.gaps)
        r_b = _linear_scan(torch.cat([torch.full_like(empty, NEG_INF), r_n[:, :, :-1]], dim=2), x_blank, self.gaps)
        psi = torch.logsumexp(start + x, dim=2)  # (r, c): the label's first frame is any t
        return psi, r_n, r_b

    def score(self, state: CTCPrefixState, llm_logits: torch.Tensor
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Joint log-scores (r, v) for every next token: -inf outside each row's candidates.

        Returns:
            the (r, v) scores and what ``advance`` needs: candidate ids (r, c), their psi (r, c)
            and forward variables (r, c, t) x 2.
        """
        llm = llm_logits.float().log_softmax(dim=-1)  # (r, v)
        count = min(self.candidates, llm.shape[-1])
        cand = llm.topk(count, dim=-1).indices  # (r, c)
        psi, r_n, r_b = self.extend(state, cand)
        psi = torch.where(cand == self.eos, self._end_score(state)[:, None], psi)
        # A prefix the CTC already rules out (psi = -inf) cannot be compared: no CTC gain.
        gain = torch.where(torch.isfinite(state.psi)[:, None], psi - state.psi[:, None], NEG_INF)  # (r, c)
        llm_cand = llm.gather(1, cand)  # (r, c)
        joint = (1 - self.weight) * llm_cand + self.weight * gain
        # A row without CTC frames, or whose CTC gives every candidate zero probability, keeps
        # the decoder's own scores rather than ending up with nothing to choose.
        hopeless = ~torch.isfinite(gain).any(dim=1, keepdim=True) | ~self.has_frames[:, None]
        joint = torch.where(hopeless, llm_cand, joint)
        scores = torch.full_like(llm, NEG_INF).scatter(1, cand, joint)
        return scores, (cand, psi, r_n, r_b)

    @staticmethod
    def advance(state: CTCPrefixState, extension: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                rows: torch.Tensor, tokens: torch.Tensor) -> CTCPrefixState:
        """The state of ``prefix(rows[i]) + tokens[i]``; ``rows``/``tokens`` (r',) from the search."""
        cand, psi, r_n, r_b = extension
        cand, psi, r_n, r_b = cand[rows], psi[rows], r_n[rows], r_b[rows]
        hit = cand == tokens[:, None]  # (r', c)
        found = hit.any(dim=1)
        which = hit.float().argmax(dim=1)  # (r',)
        take = torch.arange(len(rows), device=rows.device)
        # A token that was not a candidate (eos padding of dead beams, a forced fallback) keeps
        # the row's old state: its CTC score no longer matters.
        old = state.select(rows)
        return CTCPrefixState(
            torch.where(found[:, None], r_n[take, which], old.r_nonblank),
            torch.where(found[:, None], r_b[take, which], old.r_blank),
            torch.where(found, psi[take, which], old.psi),
            torch.where(found, tokens, old.last),
        )
