"""The runtime model: what the stream workers load and what offline code uses to predict
exactly what the stream would emit.

`ProfileModel.apply` is the one code path that turns events into new user states; the
profile agent calls it on micro-batches, `ProfileModel.profile/recommend` call it on one
user's history. The LSTM step is nn.LSTM's gate equations on the same weights:

    gates = W_ih x + b_ih + W_hh h + b_hh = P_item[item] + P_type[type] + w_v v + w_g g + b + W_hh h
    i, f, g, o = split(gates);  c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c')

where P_item = V W_ih[:, :D]^T is precomputed per item (the input projection is linear, so
this is the same sum reordered; it saves a (B, In) x (In, 4H) matmul per step).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from .artifact import Artifact, load_artifact
from .events import Event, validate_event
from .lstm import TYPE_INDEX, ProfileLSTM, gap_feature, value_feature
from .state import RECENT_DTYPE, UserState, event_id_hash

__all__ = ["ProfileModel", "Pending", "Applied", "TYPE_TAG_WEIGHT"]

#: How much one event of each type moves the user's category affinities (`tags`).
TYPE_TAG_WEIGHT: Mapping[str, float] = {
    "view": 0.5, "click": 1.0, "cart": 2.0, "purchase": 3.0, "rate": 1.0, "skip": -0.5,
}
#: How many of the user's latest items a recommendation's reason is looked for among.
REASON_WINDOW = 20
#: Event ids remembered per user for de-duplication.
EVENT_ID_WINDOW = 256


@dataclass(frozen=True, slots=True)
class Pending:
    """An event waiting to be applied, with its source position when it came from Kafka."""

    event: Event
    partition: int = -1
    offset: int = -1


@dataclass
class Applied:
    """What `apply` did for one user."""

    state: UserState
    applied: int = 0
    duplicates: int = 0
    rejected: list[tuple[Pending, str]] = field(default_factory=list)
    last_event_ts: float | None = None


def _rate_weight(value: float) -> float:
    # A 1-star rating pushes a genre down, a 5-star one up; unrated 'rate' counts as neutral-positive.
    return 1.0 if math.isnan(value) else (value - 2.5) / 2.5


class ProfileModel:
    """Loaded model artifact + the batched streaming step. Use `ProfileModel.load(path)`."""

    def __init__(self, artifact: Artifact, *, device: str | torch.device = "cpu") -> None:
        self.artifact = artifact
        self.config = artifact.config
        self.device = torch.device(device)
        cfg = self.config
        w = artifact.weights
        text = w.get("text") if cfg.use_text else None
        net = ProfileLSTM(cfg, text)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in w.items()}, strict=True)
        net.eval()
        self.net = net.to(self.device)
        D, T, H = cfg.item_dim, cfg.type_dim, cfg.hidden
        with torch.inference_mode():
            V = net.item_vectors()  # (N, D)
            W_ih = net.lstm.weight_ih_l0  # (4H, D+T+2)
            self.item_vecs = V.contiguous()
            self.item_bias = net.bias.detach().clone()  # (N,)
            self.p_item = (V @ W_ih[:, :D].T).contiguous()  # (N, 4H)
            self.p_type = (net.type_emb.weight @ W_ih[:, D:D + T].T).contiguous()  # (n_types, 4H)
            self.w_val = W_ih[:, D + T].clone()  # (4H,)
            self.w_gap = W_ih[:, D + T + 1].clone()  # (4H,)
            self.b = (net.lstm.bias_ih_l0 + net.lstm.bias_hh_l0).clone()  # (4H,)
            self.W_hh_T = net.lstm.weight_hh_l0.T.contiguous()  # (H, 4H)
            self.W_out_T = net.out.weight.T.contiguous()  # (H, D)
            self.b_out = net.out.bias.detach().clone()  # (D,)
        self.hidden = H
        self.item_ids: list[str] = artifact.catalogue.item_ids
        self.item_index: dict[str, int] = {iid: i for i, iid in enumerate(self.item_ids)}
        self.titles = artifact.catalogue.titles
        self.category_names = artifact.catalogue.category_names
        self.cat_matrix = artifact.catalogue.category_matrix()  # (N, C)
        vn = self.item_vecs.detach().cpu().numpy()
        self._unit_items = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)  # (N, D)
        self._half_life_s = cfg.tag_half_life_days * 86_400.0
        # Category sets as bitmasks (first 63 categories) so shared categories are one `&`.
        n_bits = min(63, self.cat_matrix.shape[1])
        self._cat_bits = (self.cat_matrix[:, :n_bits].astype(np.int64) << np.arange(n_bits)).sum(axis=1)
        self._bits_cache: dict[int, str] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: Path | str, *, device: str = "cpu") -> "ProfileModel":
        return cls(load_artifact(path), device=device)

    @property
    def model_version(self) -> str:
        return self.artifact.model_version

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def initial_state(self) -> UserState:
        H = self.hidden
        return UserState(h=np.zeros(H, np.float32), c=np.zeros(H, np.float32),
                         tags=np.zeros(len(self.category_names), np.float32),
                         model_version=self.model_version)

    # ------------------------------------------------------------------ tensor math
    def step(self, h: torch.Tensor, c: torch.Tensor, items: torch.Tensor, types: torch.Tensor,
             vals: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step for B users at once: h, c (B, H); items, types (B,) int64; vals, gaps (B,)."""
        gates = self.p_item[items] + self.p_type[types] + vals[:, None] * self.w_val + gaps[:, None] * self.w_gap
        gates = gates + self.b + h @ self.W_hh_T  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h2 = torch.sigmoid(o) * torch.tanh(c2)
        return h2, c2

    def user_vectors(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.W_out_T + self.b_out  # (B, D)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(h) @ self.item_vecs.T + self.item_bias  # (B, N)

    def topk(self, scores: torch.Tensor, exclude: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per row, never returning an index listed in `exclude[row]`."""
        rows = np.concatenate([np.full(len(e), r, np.int64) for r, e in enumerate(exclude)]) if exclude else np.zeros(0, np.int64)
        cols = np.concatenate([np.asarray(e, np.int64) for e in exclude]) if exclude else np.zeros(0, np.int64)
        if rows.size:
            scores = scores.clone()
            scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = -math.inf
        k = min(k, scores.shape[1])
        vals, idx = torch.topk(scores, k, dim=1)
        return idx.cpu().numpy(), vals.cpu().numpy()

    # ------------------------------------------------------------------ event application
    def _rewarm(self, state: UserState) -> None:
        """A state written by another model version: keep counters and tags, rebuild h/c by
        replaying the recent events through this model (the only history the state keeps)."""
        rec = state.recent
        h = torch.zeros(1, self.hidden, device=self.device)
        c = torch.zeros_like(h)
        prev = None
        with torch.inference_mode():
            for r in rec:
                if r["item"] >= self.n_items:
                    continue
                gap = 0.0 if prev is None else max(0.0, float(r["ts"]) - prev)
                prev = float(r["ts"])
                h, c = self.step(h, c, torch.tensor([int(r["item"])], device=self.device),
                                 torch.tensor([int(r["type"])], device=self.device),
                                 torch.from_numpy(value_feature(np.array([r["type"]]), np.array([r["value"]]))).to(self.device),
                                 torch.from_numpy(gap_feature(np.array([gap]))).to(self.device))
        state.h = h[0].cpu().numpy()
        state.c = c[0].cpu().numpy()
        state.recent = rec[rec["item"] < self.n_items]
        state.model_version = self.model_version

    def apply(self, users: Sequence[tuple[UserState, Sequence[Pending]]]) -> list[Applied]:
        """Apply each user's events in order: one batched LSTM step per round, round r taking
        the r-th accepted event of every user that has one. States are updated in place."""
        results: list[Applied] = []
        accepted: list[list[tuple[Pending, int]]] = []
        for state, events in users:
            if state.model_version != self.model_version:
                if state.events_seen:
                    self._rewarm(state)
                state.model_version = self.model_version
            res = Applied(state)
            seen_ids = set(state.event_ids.tolist())
            acc: list[tuple[Pending, int]] = []
            last_part, last_off = state.last_partition, state.last_offset
            for p in events:
                if p.partition >= 0:
                    if p.partition == last_part and p.offset <= last_off:
                        res.duplicates += 1  # redelivered after a crash or rebalance: already applied
                        continue
                    last_part, last_off = p.partition, p.offset
                ev = p.event
                if ev.event_id is not None:
                    hid = event_id_hash(ev.event_id)
                    if hid in seen_ids:
                        res.duplicates += 1
                        continue
                    seen_ids.add(hid)
                idx = self.item_index.get(ev.item_id) if ev.item_id is not None else None
                if idx is None:
                    res.rejected.append((p, f"item_id {ev.item_id!r} is not in the catalogue of model {self.model_version}"))
                    continue
                acc.append((p, idx))
            state.last_partition, state.last_offset = last_part, last_off
            results.append(res)
            accepted.append(acc)
        self._lstm_rounds(results, accepted)
        for res, acc in zip(results, accepted):
            self._bookkeeping(res, acc)
        return results

    def _lstm_rounds(self, results: list[Applied], accepted: list[list[tuple[Pending, int]]]) -> None:
        n_rounds = max((len(a) for a in accepted), default=0)
        if n_rounds == 0:
            return
        users = [u for u, a in enumerate(accepted) if a]
        Hs = torch.from_numpy(np.stack([results[u].state.h for u in users])).to(self.device)  # (U, H)
        Cs = torch.from_numpy(np.stack([results[u].state.c for u in users])).to(self.device)  # (U, H)
        last_ts = [results[u].state.last_ts if results[u].state.events_seen else None for u in users]
        with torch.inference_mode():
            for r in range(n_rounds):
                rows = [j for j, u in enumerate(users) if len(accepted[u]) > r]
                evs = [accepted[users[j]][r] for j in rows]
                items = np.array([idx for _, idx in evs], np.int64)
                types = np.array([TYPE_INDEX[p.event.type] for p, _ in evs], np.int64)
                values = np.array([math.nan if p.event.value is None else p.event.value for p, _ in evs])
                gaps = np.empty(len(rows))
                for n, (j, (p, _)) in enumerate(zip(rows, evs)):
                    prev = last_ts[j]
                    gaps[n] = 0.0 if prev is None else p.event.ts - prev
                    last_ts[j] = p.event.ts
                sel = torch.tensor(rows, device=self.device) if len(rows) != len(users) else None
                h = Hs if sel is None else Hs[sel]
                c = Cs if sel is None else Cs[sel]
                h2, c2 = self.step(h, c, torch.from_numpy(items).to(self.device), torch.from_numpy(types).to(self.device),
                                   torch.from_numpy(value_feature(types, values)).to(self.device),
                                   torch.from_numpy(gap_feature(gaps)).to(self.device))
                if sel is None:
                    Hs, Cs = h2, c2
                else:
                    Hs[sel], Cs[sel] = h2, c2
        Hn, Cn = Hs.cpu().numpy(), Cs.cpu().numpy()
        for j, u in enumerate(users):
            results[u].state.h = Hn[j].copy()
            results[u].state.c = Cn[j].copy()

    def _bookkeeping(self, res: Applied, acc: list[tuple[Pending, int]]) -> None:
        """Counters, decayed category affinities, recent events and event ids."""
        if not acc:
            return
        s = res.state
        tags = s.tags.astype(np.float64)
        last = s.last_ts if s.events_seen else None
        new_recent = np.zeros(len(acc), RECENT_DTYPE)
        new_ids = []
        for n, (p, idx) in enumerate(acc):
            ev = p.event
            if last is not None and ev.ts > last:
                tags *= 0.5 ** ((ev.ts - last) / self._half_life_s)
            value = math.nan if ev.value is None else ev.value
            w = _rate_weight(value) if ev.type == "rate" else TYPE_TAG_WEIGHT[ev.type]
            tags += w * self.cat_matrix[idx]
            last = ev.ts
            new_recent[n] = (idx, TYPE_INDEX[ev.type], value, ev.ts)
            if ev.event_id is not None:
                new_ids.append(event_id_hash(ev.event_id))
        s.tags = tags.astype(np.float32)
        s.last_ts = float(last) if last is not None else s.last_ts
        s.events_seen += len(acc)
        s.recent = np.concatenate([s.recent, new_recent])[-self.config.recent_len:]
        if new_ids:
            s.event_ids = np.concatenate([s.event_ids, np.array(new_ids, np.uint64)])[-EVENT_ID_WINDOW:]
        res.applied = len(acc)
        res.last_event_ts = float(acc[-1][0].event.ts)

    # ------------------------------------------------------------------ outputs
    def outputs(self, users: Sequence[tuple[str, UserState]], *, k: int,
                source_event_ts: Sequence[float | None] | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Profile and recommendation records (the output contracts) for each (user_id, state)."""
        if not users:
            return []
        now = time.time()
        H = torch.from_numpy(np.stack([s.h for _, s in users])).to(self.device)
        with torch.inference_mode():
            uvec = self.user_vectors(H)  # (B, D)
            sc = uvec @ self.item_vecs.T + self.item_bias  # (B, N)
            idx, vals = self.topk(sc, [s.recent["item"] for _, s in users], k)
        uvec_l = uvec.cpu().numpy().tolist()
        reasons = self._reasons(idx, [s for _, s in users])
        out = []
        for b, (uid, s) in enumerate(users):
            src_ts = source_event_ts[b] if source_event_ts is not None else None
            profile = {
                "user_id": uid,
                "vector": uvec_l[b],
                "tags": self._tags(s.tags),
                "events_seen": int(s.events_seen),
                "last_event_ts": float(s.last_ts) if s.events_seen else None,
                "model_version": self.model_version,
                "seq": int(s.seq),
                "updated_at": now,
            }
            items = [{"item_id": self.item_ids[i], "score": v} for i, v in zip(idx[b].tolist(), vals[b].tolist())]
            if reasons is not None and reasons[b] is not None:
                for it, why in zip(items, reasons[b]):
                    it["reason"] = why
            recs = {
                "user_id": uid,
                "items": items,
                "model_version": self.model_version,
                "source_event_ts": float(src_ts if src_ts is not None else s.last_ts),
                "seq": int(s.seq),
            }
            out.append((profile, recs))
        return out

    def _tags(self, tags: np.ndarray) -> dict[str, float]:
        nz = np.flatnonzero(np.abs(tags) >= 1e-4)
        order = nz[np.argsort(-np.abs(tags[nz]), kind="stable")]
        names = self.category_names
        return {names[i]: round(v, 4) for i, v in zip(order.tolist(), tags[order].tolist())}

    def _reasons(self, idx: np.ndarray, states: Sequence[UserState]) -> list[list[str] | None] | None:
        """Per recommended item: the most similar of the user's last REASON_WINDOW items (cosine of
        item vectors) and up to two shared categories. Batched: one (B, K, R) product."""
        B = len(states)
        R = REASON_WINDOW
        recent = np.full((B, R), -1, np.int64)
        for b, s in enumerate(states):
            r = s.recent["item"][-R:]
            recent[b, R - len(r):] = r
        valid = recent >= 0
        if not valid.any():
            return None
        rv = self._unit_items[np.where(valid, recent, 0)]  # (B, R, D)
        sim = np.einsum("bkd,brd->bkr", self._unit_items[idx], rv)  # (B, K, R)
        sim[~np.broadcast_to(valid[:, None, :], sim.shape)] = -np.inf
        best = np.take_along_axis(recent, sim.argmax(axis=2), axis=1)  # (B, K)
        shared = self._cat_bits[idx] & self._cat_bits[best]  # (B, K) category bitmasks
        out: list[list[str] | None] = []
        for b in range(B):
            if not valid[b].any():
                out.append(None)
                continue
            out.append([self._reason_text(t, m) for t, m in zip(best[b].tolist(), shared[b].tolist())])
        return out

    def _reason_text(self, item: int, shared_bits: int) -> str:
        cats = self._bits_names(shared_bits)
        return f"similar to {self.titles[item]}" + (f" ({cats})" if cats else "")

    def _bits_names(self, bits: int) -> str:
        hit = self._bits_cache.get(bits)
        if hit is None:
            names = [self.category_names[c] for c in range(len(self.category_names)) if bits >> c & 1]
            hit = self._bits_cache[bits] = ", ".join(names[:2])
        return hit

    # ------------------------------------------------------------------ offline conveniences
    def replay_history(self, history: Iterable[Mapping[str, Any] | Event]) -> tuple[str, UserState]:
        """Apply one user's history (event dicts in the input contract, or `Event`s) from a
        fresh state, in order; return the user id and the resulting state."""
        events = [e if isinstance(e, Event) else validate_event(dict(e), now=math.inf) for e in history]
        users = {e.user_id for e in events}
        if len(users) != 1:
            raise ValueError(f"history must hold the events of exactly one user, got {len(users)}")
        state = self.initial_state()
        self.apply([(state, [Pending(e) for e in events if e.type != "forget"])])
        return events[0].user_id, state

    def profile(self, history: Iterable[Mapping[str, Any] | Event]) -> dict[str, Any]:
        """The profile record the stream would emit after these events (one user's, in order)."""
        return self.outputs([self.replay_history(history)], k=1)[0][0]

    def recommend(self, history: Iterable[Mapping[str, Any] | Event], k: int = 10) -> list[str]:
        """The top-k item ids the stream would emit after these events."""
        recs = self.outputs([self.replay_history(history)], k=k)[0][1]
        return [it["item_id"] for it in recs["items"]]

