"""Batched generation with a KV cache: greedy and beam search over left-padded speech prompts.

Each item keeps its own limits (``max_new_tokens`` from its own audio length, ``min_new_tokens``)
and stops at its own eos, so a batch decodes exactly as its items would one by one.

Shape legend: b = batch, k = beams, l = tokens, d = LLM width, v = vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nue_core.ctc_prefix import CTCPrefixScorer
from nue_core.prompt import PackedSequence


@dataclass
class GenerationConfig:
    """Decoding settings.

    Attributes:
        num_beams: 1 = greedy.
        max_new_tokens: fixed cap, or None to derive it per item from the audio length as the
            released Nue-ASR did: ``int(tokens_per_second * seconds + extra_tokens + 0.5)``.
        min_new_tokens: eos is forbidden before this many tokens (the released model used 2).
        repetition_limit: stop an item whose output ends in the same n-gram (n <= 4) repeated this
            many times (a guard against loops); 0 disables. 12 here and in ``DecodeSpec``; a
            released Nue-ASR folder's ``decode`` says 0, as the released code had no guard.
        length_penalty: beam scores are summed log-probs / length ** length_penalty.
        ctc_weight: joint CTC/decoder scoring weight in [0, 1] (``nue_core.ctc_prefix``); needs a
            bridge with a CTC head over the decoder vocabulary; 0 = the decoder alone.
        ctc_candidates: decoder's best tokens per step scored by the CTC prefix scorer.
    """

    num_beams: int = 1
    max_new_tokens: int | None = None
    min_new_tokens: int = 2
    tokens_per_second: float = 4.0
    extra_tokens: int = 20
    repetition_limit: int = 12
    length_penalty: float = 1.0
    ctc_weight: float = 0.0
    ctc_candidates: int = 8
    force_beam_search: bool = False  # run the beam code path even with one beam (tests, comparisons)

    @classmethod
    def for_model(cls, model_config, **overrides) -> "GenerationConfig":  # type: ignore[no-untyped-def]
        """The model config's decoding defaults (``decode:``), with explicit overrides on top.

        Build from the model, not ``GenerationConfig()``, wherever a run should decode as the model
        is meant to: the dataclass defaults are those of nue's own models, not the model's own.
        Overrides that are None keep the model's value.
        """
        decode = model_config.decode
        values = {"min_new_tokens": decode.min_new_tokens, "tokens_per_second": decode.tokens_per_second,
                  "extra_tokens": decode.extra_tokens, "ctc_weight": decode.ctc_weight,
                  "repetition_limit": decode.repetition_limit}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def token_limits(self, seconds: torch.Tensor) -> torch.Tensor:
        """(b,) audio seconds -> (b,) max new tokens per item."""
        if self.max_new_tokens is not None:
            return torch.full_like(seconds, self.max_new_tokens, dtype=torch.long)
        return (self.tokens_per_second * seconds + self.extra_tokens + 0.5).long()


@dataclass
class _Step:
    """Decoder state between steps: cache, attention mask (b, c) and next positions (b,)."""

    cache: object
    mask: torch.Tensor
    next_pos: torch.Tensor
    logits: torch.Tensor  # (b, v) of the last position

    def advance(self, decoder, tokens: torch.Tensor) -> "_Step":  # type: ignore[no-untyped-def]
        mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        out = decoder(decoder.embed(tokens[:, None]), mask, self.next_pos[:, None], cache=self.cache, use_cache=True)
        return _Step(out.cache, mask, self.next_pos + 1, out.logits[:, -1].float())


def _start(decoder, packed: PackedSequence) -> _Step:  # type: ignore[no-untyped-def]
    out = decoder(packed.embeds, packed.attention_mask, packed.position_ids, cache=None, use_cache=True)
    next_pos = packed.attention_mask.sum(dim=1)  # each item's real prompt length
    return _Step(out.cache, packed.attention_mask, next_pos, out.logits[:, -1].float())


def _forbid_eos(logits: torch.Tensor, step: int, min_new: int, eos: int) -> torch.Tensor:
    if step < min_new:
        logits = logits.clone()
        logits[:, eos] = float("-inf")
    return logits


def is_looping(tokens: list[int], limit: int, max_n: int = 4) -> bool:
    """True when ``tokens`` ends with one n-gram (n <= max_n) repeated ``limit`` times."""
    if limit <= 0:
        return False
    for n in range(1, max_n + 1):
        span = n * limit
        if len(tokens) >= span:
            tail = tokens[-span:]
            if all(tail[i] == tail[i % n] for i in range(span)):
                return True
    return False


@torch.no_grad()
def greedy(decoder, packed: PackedSequence, limits: torch.Tensor, cfg: GenerationConfig, eos: int,  # type: ignore[no-untyped-def]
           ctc: CTCPrefixScorer | None = None) -> list[list[int]]:
    """Greedy decoding of a left-padded batch. Returns per item the new token ids without eos.

    ``ctc``: joint CTC/decoder scoring (rows = batch items), or None for the decoder alone.
    """
    batch = packed.embeds.shape[0]
    state = _start(decoder, packed)
    ctc_state = ctc.initial_state() if ctc is not None else None
    outputs: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    rows = torch.arange(batch, device=packed.embeds.device)
    for step in range(int(limits.max()) if batch else 0):
        scores, extension = ctc.score(ctc_state, state.logits) if ctc is not None else (state.logits, None)
        tokens = _forbid_eos(scores, step, cfg.min_new_tokens, eos).argmax(dim=-1)
        if ctc is not None:
            ctc_state = ctc.advance(ctc_state, extension, rows, tokens)
        for i, tok in enumerate(tokens.tolist()):
            if done[i]:
                continue
            if tok == eos:
                done[i] = True
                continue
            outputs[i].append(tok)
            if len(outputs[i]) >= int(limits[i]) or is_looping(outputs[i], cfg.repetition_limit):
                done[i] = True
        if all(done):
            break
        # Finished items still run (their tokens are ignored): keeps the batch rectangular.
        state = state.advance(decoder, tokens)
    return outputs


@dataclass
class _Hyps:
    """Finished hypotheses of one item: (score, tokens), best first, at most ``size``."""

    size: int
    items: list[tuple[float, list[int]]] = field(default_factory=list)

    def add(self, score: float, tokens: list[int]) -> None:
        self.items.append((score, tokens))
        self.items.sort(key=lambda x: -x[0])
        del self.items[self.size :]

    @property
    def full(self) -> bool:
        return len(self.items) >= self.size


@torch.no_grad()
def beam_search(decoder, packed: PackedSequence, limits: torch.Tensor, cfg: GenerationConfig, eos: int,  # type: ignore[no-untyped-def]
                ctc: CTCPrefixScorer | None = None) -> list[list[int]]:
    """Beam search (early stopping: an item ends when it has ``num_beams`` finished hypotheses).

    An eos candidate counts only when it ranks within the top ``num_beams`` of its step, so
    ``num_beams=1`` picks exactly what greedy picks (with or without ``ctc`` joint scoring).
    """
    k, batch = cfg.num_beams, packed.embeds.shape[0]
    state = _start(decoder, packed)
    expand = torch.arange(batch, device=packed.embeds.device).repeat_interleave(k)
    state = _Step(decoder.reorder_cache(state.cache, expand), state.mask[expand], state.next_pos[expand], state.logits[expand])
    if ctc is not None:
        ctc = ctc.expand(expand)
        ctc_state = ctc.initial_state()
    scores = torch.full((batch, k), float("-inf"), device=state.logits.device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at step 0
    seqs: list[list[int]] = [[] for _ in range(batch * k)]
    finished = [_Hyps(k) for _ in range(batch)]
    for step in range(int(limits.max()) if batch else 0):
        if ctc is not None:  # joint scores are already log-probabilities (-inf off the candidates)
            joint, extension = ctc.score(ctc_state, state.logits)
            logp = _forbid_eos(joint, step, cfg.min_new_tokens, eos)
        else:
            logp = _forbid_eos(state.logits, step, cfg.min_new_tokens, eos).log_softmax(dim=-1)
        total = (logp + scores.view(-1, 1)).view(batch, -1)  # (b, k * v)
        top_scores, top_idx = total.topk(2 * k, dim=1)
        vocab = logp.shape[-1]
        pick_rows, pick_tokens, new_scores, new_seqs = _select(
            top_scores, top_idx, vocab, k, seqs, finished, limits, step, eos, cfg
        )
        if all(h.full for h in finished):
            break
        scores = new_scores
        seqs = new_seqs
        if ctc is not None:
            ctc_state = ctc.advance(ctc_state, extension, pick_rows, pick_tokens)
        state = _Step(decoder.reorder_cache(state.cache, pick_rows), state.mask[pick_rows], state.next_pos[pick_rows], state.logits[pick_rows])
        state = state.advance(decoder, pick_tokens)
    return [_best(finished[b], seqs[b * k : (b + 1) * k], scores[b], cfg) for b in range(batch)]


def _select(top_scores, top_idx, vocab, k, seqs, finished, limits, step, eos, cfg):  # type: ignore[no-untyped-def]
    """Choose the next ``k`` running beams per item and file finished hypotheses."""
    batch = top_scores.shape[0]
    rows, tokens = [], []
    scores = torch.full((batch, k), float("-inf"), device=top_scores.device)
    new_seqs: list[list[int]] = []
    for b in range(batch):
        chosen = 0
        for rank, (score, idx) in enumerate(zip(top_scores[b].tolist(), top_idx[b].tolist())):
            beam, tok = divmod(idx, vocab)
            row = b * k + beam
            if score == float("-inf") or chosen == k:
                break
            if finished[b].full:
                break
            if tok == eos:
                if rank < k:
                    finished[b].add(score / max(len(seqs[row]), 1) ** cfg.length_penalty, seqs[row])
                continue
            seq = seqs[row] + [tok]
            if len(seq) >= int(limits[b]) or is_looping(seq, cfg.repetition_limit):
                finished[b].add(score / len(seq) ** cfg.length_penalty, seq)
                continue
            rows.append(row)
            tokens.append(tok)
            scores[b, chosen] = score
            new_seqs.append(seq)
            chosen += 1
        for _ in range(chosen, k):  # pad with a dead beam so the batch stays (b * k)
            rows.append(b * k)
            tokens.append(eos)
            new_seqs.append([])
    device = top_idx.device
    return torch.tensor(rows, device=device), torch.tensor(tokens, device=device), scores, new_seqs


def _best(hyps: _Hyps, running: list[list[int]], scores: torch.Tensor, cfg: GenerationConfig) -> list[int]:
    if hyps.items:
        return hyps.items[0][1]
    # No hypothesis reached eos or a limit: fall back to the best running beam.
    ranked = sorted(range(len(running)), key=lambda i: -float(scores[i]) / max(len(running[i]), 1) ** cfg.length_penalty)
    return running[ranked[0]] if ranked else []
