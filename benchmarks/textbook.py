"""The textbook implementation of the same model, for the harness to measure ours against.

Same modules and weights as ``Seq2Seq``, run the straightforward way: an ``nn.LSTM`` call per decoder time
step, greedy decoding that keeps every sentence in the batch until all have ended, and beam search whose
bookkeeping is a Python loop over sentences and candidates. Its search rules are ours (forced EOS at the length
limit, EOS candidates among the top k end, the same stopping rule), so the two should give the same
translations and differ only in speed.
"""

from __future__ import annotations

import torch

from seq2seq_lit.config import DecodingConfig
from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_lit.models.rnn.seq2seq import EncodedSource, Seq2Seq
from seq2seq_lit.search import length_penalty, max_lengths


def decode_step(model: Seq2Seq, y: torch.Tensor, feed: torch.Tensor, state: tuple, memory: EncodedSource):
    """One input-fed step through ``nn.LSTM``; returns the attentional vector ``(batch, 1, hidden)`` and state."""
    dec = model.decoder
    emb = dec.dropout(dec.embedding(y))
    # |emb| = (batch_size, 1, word_vec_size), |feed| = (batch_size, 1, hidden_size)
    out, state = dec.rnn(torch.cat([emb, feed], dim=-1), state)
    context, _ = dec.attention(out, memory.keys, memory.h_src, memory.pad_mask)
    return dec.dropout(torch.tanh(dec.concat(torch.cat([context, out], dim=-1)))), state


def force_eos(lp: torch.Tensor, rows) -> None:
    """In place: every token but EOS impossible in ``lp[rows]`` (a sentence at its length limit)."""
    lp[rows, :EOS_ID] = float("-inf")
    lp[rows, EOS_ID + 1 :] = float("-inf")


def forward(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log-probabilities ``(batch, tgt_len, |V|)``, the generator applied once after the loop."""
    encoded = model.encode(src, src_lengths)
    memory, (state, feed) = encoded.memory, encoded.decoder
    outputs = []
    for t in range(tgt_in.size(1)):
        feed, state = decode_step(model, tgt_in[:, t : t + 1], feed, state, memory)
        outputs.append(feed)
    return model.generator(torch.cat(outputs, dim=1))


@torch.no_grad()
def greedy(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, cfg: DecodingConfig) -> list:
    """Token ids per sentence (EOS dropped); every sentence stays in the batch until all have ended."""
    encoded = model.encode(src, src_lengths)
    memory, (state, feed) = encoded.memory, encoded.decoder
    limit = max_lengths(src_lengths, cfg.max_len_a, cfg.max_len_b)
    y = src.new_full((src.size(0), 1), BOS_ID)
    ended = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    tokens = []
    for t in range(int(limit.max())):
        feed, state = decode_step(model, y, feed, state, memory)
        lp = model.generator(feed)[:, -1]
        # |lp| = (batch_size, vocab_size); EOS is forced at each sentence's length limit
        force_eos(lp, t + 1 >= limit)
        token = lp.argmax(dim=-1).masked_fill(ended, PAD_ID)
        tokens.append(token)
        ended |= token == EOS_ID
        if bool(ended.all()):
            break
        y = token.unsqueeze(1)
    rows = torch.stack(tokens, dim=1).tolist()
    return [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in rows]


@torch.no_grad()
def beam(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, cfg: DecodingConfig) -> list:
    """Best beam-search hypothesis per sentence, with the bookkeeping done sentence by sentence in Python."""
    batch, k, alpha, device = src.size(0), cfg.beam_size, cfg.alpha, src.device
    encoded = model.encode(src, src_lengths)
    memory, (state, feed) = encoded.memory, encoded.decoder
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    memory, state, feed = memory.index_select(rows), tuple(s.index_select(1, rows) for s in state), feed[rows]
    limits = max_lengths(src_lengths, cfg.max_len_a, cfg.max_len_b).tolist()
    live = [[(0.0, [])] + [(float("-inf"), [])] * (k - 1) for _ in range(batch)]  # (log-prob, tokens) per row
    finished: list[list[tuple[float, list]]] = [[] for _ in range(batch)]  # (score, tokens), best first
    active = list(range(batch))
    for t in range(max(limits)):
        index = torch.tensor([i * k + j for i in active for j in range(k)], device=device)
        y = torch.tensor([[hyp[1][-1] if hyp[1] else BOS_ID] for i in active for hyp in live[i]], device=device)
        step_memory = memory.index_select(index)
        step_state = tuple(s.index_select(1, index) for s in state)
        step_feed, step_state = decode_step(model, y, feed[index], step_state, step_memory)
        lp = model.generator(step_feed)[:, -1]
        # |lp| = (n_active * k, vocab_size)
        still, source = [], []
        for n, i in enumerate(active):
            block = lp[n * k : (n + 1) * k].clone()
            if t + 1 >= limits[i]:
                force_eos(block, slice(None))
            total = torch.tensor([hyp[0] for hyp in live[i]], device=device).unsqueeze(1) + block
            cand_lp, cand = total.view(-1).topk(2 * k)
            new_live = []
            for rank, (score, c) in enumerate(zip(cand_lp.tolist(), cand.tolist())):
                beam_row, token = divmod(c, block.size(1))
                if token == EOS_ID:
                    if rank < k:
                        finished[i].append((score / length_penalty(t + 1, alpha), live[i][beam_row][1]))
                elif len(new_live) < k:
                    new_live.append((score, live[i][beam_row][1] + [token]))
                    source.append(n * k + beam_row)
            finished[i] = sorted(finished[i], key=lambda f: -f[0])[:k]
            live[i] = new_live
            best_reachable = new_live[0][0] / length_penalty(limits[i], alpha)
            if t + 1 >= limits[i] or (finished[i] and finished[i][0][0] >= best_reachable):
                source = source[:-k]
            else:
                still.append(i)
        if not still:
            break
        rows = torch.tensor([i * k + j for i in still for j in range(k)], device=device)
        picked = torch.tensor(source, device=device)
        for s, new in zip(state, step_state):
            s[:, rows] = new[:, picked]
        feed[rows] = step_feed[picked]
        active = still
    return [f[0][1] for f in finished]


def translate(translator, lines: list[str], cfg: DecodingConfig) -> list[str]:
    """``Translator.translate`` (same tokenizing and length-sorted batches) with the textbook search."""
    search = greedy if cfg.beam_size == 1 else beam
    out = [""] * len(lines)
    translator.model.eval()
    for batch in translator.batches(translator.encode(lines), cfg.max_tokens):
        found = search(translator.model, batch["src"], batch["src_lengths"], cfg)
        for index, text in zip(batch["ids"].tolist(), translator.tgt_tokenizer.decode(found)):
            out[index] = text
    return out
