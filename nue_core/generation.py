"""Batched generation with a KV cache: greedy and beam search over left-padded speech prompts.

Each item keeps its own limits (``max_new_tokens`` from its own audio length, ``min_new_tokens``)
and stops at its own eos, so a batch decodes exactly as its items would one by one.

Shape legend: b = batch, k = beams, l = tokens, d = LLM width, v = vocabulary.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch

from nue_core.ctc_prefix import CTCPrefixScorer, CTCPrefixState
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
class DecodeState:
    """Decoder state between steps: cache, attention mask (b, c) and next positions (b,).

    ``advance`` feeds one token per row; rows may hold different prompt lengths (left padding,
    mask 0), so positions are per row.
    """

    cache: object
    mask: torch.Tensor
    next_pos: torch.Tensor
    logits: torch.Tensor  # (b, v) of the last position

    def advance(self, decoder, tokens: torch.Tensor) -> "DecodeState":  # type: ignore[no-untyped-def]
        mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        out = decoder(decoder.embed(tokens[:, None]), mask, self.next_pos[:, None], cache=self.cache, use_cache=True)
        return DecodeState(out.cache, mask, self.next_pos + 1, out.logits[:, -1].float())


@functools.cache
def _forward_takes(cls: type, name: str) -> bool:
    forward = getattr(cls, "forward", None) or getattr(cls, "__call__")
    try:
        return name in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # a builtin or C callable: assume the protocol's arguments only
        return False


def takes_logits_to_keep(decoder: object) -> bool:
    """Whether ``decoder`` accepts ``logits_to_keep`` (an optional argument of the Decoder protocol)."""
    return _forward_takes(type(decoder), "logits_to_keep")


def start_decoding(decoder, packed: PackedSequence) -> DecodeState:  # type: ignore[no-untyped-def]
    """Prefill the left-padded prompts: the state whose logits pick each row's first token."""
    # Only the last position's logits are sampled: a decoder that can skip the others is asked to.
    keep = {"logits_to_keep": 1} if takes_logits_to_keep(decoder) else {}
    out = decoder(packed.embeds, packed.attention_mask, packed.position_ids, cache=None, use_cache=True, **keep)
    next_pos = packed.attention_mask.sum(dim=1)  # each item's real prompt length
    return DecodeState(out.cache, packed.attention_mask, next_pos, out.logits[:, -1].float())


def _forbid_eos(logits: torch.Tensor, step: int | torch.Tensor, min_new: int, eos: int) -> torch.Tensor:
    """logits (r, v) with eos at -inf on rows whose ``step`` (an int, or (r,) per row: the
    continuous-batching engine holds rows at different steps) is below ``min_new``."""
    early = torch.as_tensor(step, device=logits.device) < min_new  # () or (r,)
    if not bool(early.any()):
        return logits
    logits = logits.clone()
    logits[:, eos] = torch.where(early, torch.full_like(logits[:, eos], float("-inf")), logits[:, eos])
    return logits


def greedy_scores(logits: torch.Tensor, step: int | torch.Tensor, cfg: GenerationConfig, eos: int,
                  ctc: CTCPrefixScorer | None = None, ctc_state: CTCPrefixState | None = None
                  ) -> tuple[torch.Tensor, tuple | None]:
    """Scores (r, v) whose argmax is each row's greedy token, and the CTC extension for ``advance``.

    Shared by ``greedy`` and the continuous-batching engine: every row's scores depend only on its
    own logits, CTC state and step, so a row decodes the same in any batch.
    """
    scores, extension = ctc.score(ctc_state, logits) if ctc is not None else (logits, None)
    return _forbid_eos(scores, step, cfg.min_new_tokens, eos), extension


def beam_log_probs(logits: torch.Tensor, step: int | torch.Tensor, cfg: GenerationConfig, eos: int,
                   ctc: CTCPrefixScorer | None = None, ctc_state: CTCPrefixState | None = None
                   ) -> tuple[torch.Tensor, tuple | None]:
    """Next-token log-probs (r, v) of each beam row, and the CTC extension (as ``greedy_scores``)."""
    if ctc is not None:  # joint scores are already log-probabilities (-inf off the candidates)
        joint, extension = ctc.score(ctc_state, logits)
        return _forbid_eos(joint, step, cfg.min_new_tokens, eos), extension
    return _forbid_eos(logits, step, cfg.min_new_tokens, eos).log_softmax(dim=-1), None


def greedy_update(output: list[int], token: int, limit: int, cfg: GenerationConfig, eos: int) -> bool:
    """File one greedy ``token`` into ``output`` (eos is not kept); True when the item is done."""
    if token == eos:
        return True
    output.append(token)
    return len(output) >= limit or is_looping(output, cfg.repetition_limit)


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
    state = start_decoding(decoder, packed)
    ctc_state = ctc.initial_state() if ctc is not None else None
    outputs: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    rows = torch.arange(batch, device=packed.embeds.device)
    for step in range(int(limits.max()) if batch else 0):
        scores, extension = greedy_scores(state.logits, step, cfg, eos, ctc, ctc_state)
        tokens = scores.argmax(dim=-1)
        if ctc is not None:
            ctc_state = ctc.advance(ctc_state, extension, rows, tokens)
        for i, tok in enumerate(tokens.tolist()):
            if not done[i]:
                done[i] = greedy_update(outputs[i], tok, int(limits[i]), cfg, eos)
        if all(done):
            break
        # Finished items still run (their tokens are ignored): keeps the batch rectangular.
        state = state.advance(decoder, tokens)
    return outputs


@dataclass
class Hyps:
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
    state = start_decoding(decoder, packed)
    expand = torch.arange(batch, device=packed.embeds.device).repeat_interleave(k)
    state = DecodeState(decoder.reorder_cache(state.cache, expand), state.mask[expand], state.next_pos[expand], state.logits[expand])
    ctc_state = None
    if ctc is not None:
        ctc = ctc.expand(expand)
        ctc_state = ctc.initial_state()
    scores = torch.full((batch, k), float("-inf"), device=state.logits.device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at step 0
    seqs: list[list[int]] = [[] for _ in range(batch * k)]
    finished = [Hyps(k) for _ in range(batch)]
    for step in range(int(limits.max()) if batch else 0):
        logp, extension = beam_log_probs(state.logits, step, cfg, eos, ctc, ctc_state)
        total = (logp + scores.view(-1, 1)).view(batch, -1)  # (b, k * v)
        top_scores, top_idx = total.topk(2 * k, dim=1)
        vocab = logp.shape[-1]
        pick_rows, pick_tokens, new_scores, new_seqs = _select(
            top_scores, top_idx, vocab, k, seqs, finished, limits, eos, cfg
        )
        if all(h.full for h in finished):
            break
        scores = new_scores
        seqs = new_seqs
        if ctc is not None:
            ctc_state = ctc.advance(ctc_state, extension, pick_rows, pick_tokens)
        state = DecodeState(decoder.reorder_cache(state.cache, pick_rows), state.mask[pick_rows], state.next_pos[pick_rows], state.logits[pick_rows])
        state = state.advance(decoder, pick_tokens)
    return [best_hypothesis(finished[b], seqs[b * k : (b + 1) * k], scores[b], cfg) for b in range(batch)]


def _select(top_scores, top_idx, vocab, k, seqs, finished, limits, eos, cfg):  # type: ignore[no-untyped-def]
    """Choose the next ``k`` running beams per item and file finished hypotheses."""
    batch = top_scores.shape[0]
    rows, tokens = [], []
    scores = torch.full((batch, k), float("-inf"), device=top_scores.device)
    new_seqs: list[list[int]] = []
    for b in range(batch):
        choice = select_beams(top_scores[b].tolist(), top_idx[b].tolist(), vocab, k, seqs[b * k : (b + 1) * k],
                              finished[b], int(limits[b]), eos, cfg)
        rows.extend(b * k + beam for beam in choice.beams)
        tokens.extend(choice.tokens)
        scores[b, : len(choice.scores)] = torch.tensor(choice.scores, dtype=scores.dtype)
        new_seqs.extend(choice.seqs)
    device = top_idx.device
    return torch.tensor(rows, device=device), torch.tensor(tokens, device=device), scores, new_seqs


@dataclass
class BeamChoice:
    """One item's next beams (always ``k``; dead ones are padding).

    Attributes:
        beams: (k,) beam (row within the item) each new beam continues.
        tokens: (k,) the token each appends (eos on dead beams).
        scores: summed log-probs of the live beams (fewer than k when some died; the rest are -inf).
        seqs: (k,) token lists of the new beams ([] on dead beams).
    """

    beams: list[int]
    tokens: list[int]
    scores: list[float]
    seqs: list[list[int]]

    @property
    def live(self) -> int:
        return len(self.scores)


def select_beams(top_scores: list[float], top_idx: list[int], vocab: int, k: int, seqs: list[list[int]],
                 finished: Hyps, limit: int, eos: int, cfg: GenerationConfig) -> BeamChoice:
    """One item's beam step: from its ``2k`` best (beam * vocab + token) candidates, file finished
    hypotheses into ``finished`` and choose the next ``k`` beams (shared by ``beam_search`` and the
    continuous-batching engine, so both decide exactly alike)."""
    beams, tokens, scores, new_seqs = [], [], [], []
    for rank, (score, idx) in enumerate(zip(top_scores, top_idx)):
        beam, tok = divmod(idx, vocab)
        if score == float("-inf") or len(scores) == k or finished.full:
            break
        if tok == eos:
            if rank < k:
                finished.add(score / max(len(seqs[beam]), 1) ** cfg.length_penalty, seqs[beam])
            continue
        seq = seqs[beam] + [tok]
        if len(seq) >= limit or is_looping(seq, cfg.repetition_limit):
            finished.add(score / len(seq) ** cfg.length_penalty, seq)
            continue
        beams.append(beam)
        tokens.append(tok)
        scores.append(score)
        new_seqs.append(seq)
    for _ in range(len(scores), k):  # pad with a dead beam so the item keeps k rows
        beams.append(0)
        tokens.append(eos)
        new_seqs.append([])
    return BeamChoice(beams, tokens, scores, new_seqs)


def best_hypothesis(hyps: Hyps, running: list[list[int]], scores: torch.Tensor, cfg: GenerationConfig) -> list[int]:
    if hyps.items:
        return hyps.items[0][1]
    # No hypothesis reached eos or a limit: fall back to the best running beam.
    ranked = sorted(range(len(running)), key=lambda i: -float(scores[i]) / max(len(running[i]), 1) ** cfg.length_penalty)
    return running[ranked[0]] if ranked else []
