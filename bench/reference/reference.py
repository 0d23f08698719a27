#!/usr/bin/python3
"""Reference trainer: LR, FM and DeepFM in plain PyTorch over a Criteo TSV, one pass.

A yardstick for Eddy's model quality. It never imports Eddy code. Progressive
validation (test-then-train): every mini-batch is scored before the model
trains on it; AUC and logloss are over all rows, like eddy_train's
"progressive validation, since start" line.

Features: the 26 categorical columns as exact ids (a growing dict from
(field, string) to a table row; an empty column is a value of its own), the 13
integer columns as log1p dense inputs (0 when missing). First-order weights and
embedding vectors live in separate tables: Adagrad for the weights, lazy
(sparse) Adam for the vectors (only the rows in the batch are touched), Adam
for the dense parameters. Vectors start from N(0, init_std^2), weights at 0.

  /usr/bin/python3 bench/reference/reference.py --data=s.tsv --model=deepfm
Prints one line "model=... rows=... auc=... logloss=... seconds=... rows_per_s=...".
"""

import argparse
import math
import sys
import time

import numpy as np
import torch

NUM_INTS = 13
NUM_CATS = 26


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="Criteo TSV (label, I1..I13, C1..C26).")
    p.add_argument("--model", default="deepfm", choices=["lr", "fm", "deepfm"])
    p.add_argument("--batch_size", type=int, default=1024, help="Rows per mini-batch.")
    p.add_argument("--emb_dim", type=int, default=16, help="Embedding dimension (fm, deepfm).")
    p.add_argument("--hidden", default="400,400,400", help="DeepFM MLP layer sizes.")
    p.add_argument("--weight_lr", type=float, default=0.05, help="Adagrad rate, first-order weights.")
    p.add_argument("--vector_lr", type=float, default=0.001, help="Lazy Adam rate, embedding vectors.")
    p.add_argument("--dense_lr", type=float, default=0.001, help="Adam rate, dense parameters.")
    p.add_argument("--init_std", type=float, default=0.001, help="Std of the initial vectors.")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: OpenMP spinning hurts on a busy machine).")
    p.add_argument("--max_rows", type=int, default=0, help="Stop after this many rows (0: all).")
    p.add_argument("--seed", type=int, default=1, help="Seed of the initial parameters.")
    return p.parse_args(argv)


class IdMap:
    """Exact ids: (field, string) -> row of the sparse tables, growing. Row 0 is
    the bias, an always-present feature (so it gets the weights' Adagrad)."""

    BIAS = 0

    def __init__(self):
        self.maps = [dict() for _ in range(NUM_CATS)]
        self.size = 1

    def lookup(self, cols_by_field):
        out = np.empty((len(cols_by_field[0]), NUM_CATS), dtype=np.int64)
        for f, col in enumerate(cols_by_field):
            m = self.maps[f]
            ids = out[:, f]
            for i, s in enumerate(col):
                r = m.get(s)
                if r is None:
                    r = m[s] = self.size
                    self.size += 1
                ids[i] = r
        return out


class SparseTable:
    """Rows of `dim` floats with lazily grown capacity and per-row optimizer state."""

    def __init__(self, dim, init_std, optimizer, lr, gen):
        self.dim, self.init_std, self.optimizer, self.lr, self.gen = dim, init_std, optimizer, lr, gen
        self.capacity = 0
        self.value = torch.empty(0, dim)
        self.state = [torch.empty(0, dim) for _ in range(1 if optimizer == "adagrad" else 2)]
        self.step = 0

    def ensure(self, rows):
        if rows <= self.capacity:
            return
        cap = max(rows, 2 * self.capacity, 1 << 16)
        extra = cap - self.capacity
        init = (torch.randn(extra, self.dim, generator=self.gen) * self.init_std
                if self.init_std > 0 else torch.zeros(extra, self.dim))
        self.value = torch.cat([self.value, init])
        self.state = [torch.cat([s, torch.zeros(extra, self.dim)]) for s in self.state]
        self.capacity = cap

    def update(self, rows, grad):
        if self.optimizer == "adagrad":
            acc = self.state[0].index_select(0, rows).add_(grad * grad)
            self.state[0].index_copy_(0, rows, acc)
            self.value.index_add_(0, rows, -self.lr * grad / (acc.sqrt() + 1e-8))
            return
        # Lazy Adam (like torch.optim.SparseAdam): moments of the touched rows only.
        b1, b2 = 0.9, 0.999
        self.step += 1
        m = self.state[0].index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
        v = self.state[1].index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.state[0].index_copy_(0, rows, m)
        self.state[1].index_copy_(0, rows, v)
        lr = self.lr * math.sqrt(1 - b2**self.step) / (1 - b1**self.step)
        self.value.index_add_(0, rows, -lr * m / (v.sqrt() + 1e-8))


class Model(torch.nn.Module):
    def __init__(self, kind, emb_dim, hidden):
        super().__init__()
        self.kind = kind
        self.dense_w = torch.nn.Parameter(torch.zeros(NUM_INTS))
        if kind in ("fm", "deepfm"):
            # Vectors of the 13 dense inputs, scaled by their values, join the FM term.
            self.dense_v = torch.nn.Parameter(torch.randn(NUM_INTS, emb_dim) * 0.01)
        if kind == "deepfm":
            layers, width = [], NUM_CATS * emb_dim + NUM_INTS
            for h in hidden:
                layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
                width = h
            layers.append(torch.nn.Linear(width, 1))
            self.mlp = torch.nn.Sequential(*layers)

    def forward(self, w, v, dense):
        """w: [B, 27] first-order weights (bias first), v: [B, 26, D] vectors, dense: [B, 13]."""
        logit = w.sum(1) + dense @ self.dense_w
        if self.kind == "lr":
            return logit
        all_v = torch.cat([v, dense.unsqueeze(2) * self.dense_v], 1)
        s = all_v.sum(1)
        logit = logit + 0.5 * (s * s - (all_v * all_v).sum(1)).sum(1)
        if self.kind == "deepfm":
            logit = logit + self.mlp(torch.cat([v.flatten(1), dense], 1)).squeeze(1)
        return logit


def read_batches(path, batch_size, max_rows):
    with open(path, "r", encoding="ascii", newline="\n") as f:
        rows, done = [], 0
        for line in f:
            rows.append(line.rstrip("\n").split("\t"))
            if len(rows) == batch_size:
                yield rows
                done += len(rows)
                rows = []
                if max_rows and done >= max_rows:
                    return
        if rows:
            yield rows


def to_arrays(rows):
    cols = list(zip(*rows))
    labels = np.array(cols[0], dtype=np.float32)
    ints = np.array([[float(x) if x else 0.0 for x in cols[1 + f]] for f in range(NUM_INTS)],
                    dtype=np.float64).T
    dense = np.log1p(np.maximum(ints, 0)).astype(np.float32)
    return labels, dense, cols[1 + NUM_INTS:1 + NUM_INTS + NUM_CATS]


def exact_auc(p, y):
    """AUC with tied scores counted as half."""
    order = np.argsort(p, kind="mergesort")
    p, y = p[order], y[order]
    ranks = np.empty(len(p))
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and p[j + 1] == p[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    pos = y.sum()
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    model = Model(args.model, args.emb_dim, hidden)
    dense_opt = torch.optim.Adam(model.parameters(), lr=args.dense_lr)
    weights = SparseTable(1, 0.0, "adagrad", args.weight_lr, gen)
    vectors = SparseTable(args.emb_dim, args.init_std, "adam", args.vector_lr, gen) \
        if args.model != "lr" else None
    ids = IdMap()
    preds, labels_all = [], []
    start = time.monotonic()
    for rows in read_batches(args.data, args.batch_size, args.max_rows):
        labels, dense, cats = to_arrays(rows)
        batch_ids = torch.from_numpy(ids.lookup(cats))
        uniq, inverse = torch.unique(batch_ids, return_inverse=True)
        bias_pos = torch.searchsorted(uniq, torch.tensor([IdMap.BIAS]))
        if len(uniq) == 0 or uniq[0] != IdMap.BIAS:
            uniq = torch.cat([torch.tensor([IdMap.BIAS]), uniq])
            inverse += 1
            bias_pos = torch.tensor([0])
        w_index = torch.cat([bias_pos.expand(len(labels), 1), inverse], 1)
        weights.ensure(ids.size)
        w_u = weights.value.index_select(0, uniq).requires_grad_()
        v_u = None
        if vectors is not None:
            vectors.ensure(ids.size)
            v_u = vectors.value.index_select(0, uniq).requires_grad_()
        y = torch.from_numpy(labels)
        logit = model(w_u[w_index].squeeze(2), v_u[inverse] if v_u is not None else None,
                      torch.from_numpy(dense))
        preds.append(torch.sigmoid(logit).detach().numpy().copy())  # scored before training
        labels_all.append(labels)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        dense_opt.zero_grad()
        loss.backward()
        dense_opt.step()
        weights.update(uniq, w_u.grad)
        if vectors is not None:
            vectors.update(uniq, v_u.grad)
    seconds = time.monotonic() - start
    p = np.concatenate(preds).astype(np.float64)
    y = np.concatenate(labels_all).astype(np.float64)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    logloss = float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean())
    print(f"model={args.model} rows={len(y)} auc={exact_auc(p, y):.5f} logloss={logloss:.5f} "
          f"seconds={seconds:.1f} rows_per_s={len(y) / seconds:.0f} ids={ids.size}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
