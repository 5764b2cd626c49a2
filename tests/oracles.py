"""Dense references the tests compare the library against, each written once.

Plain tensors and textbook formulas, cheap only at hand-sized shapes. A test file
imports what it needs (``from oracles import dense_norm_adj``; tests/ is on sys.path
through tests/conftest.py). Where two copies of a reference differed, both are kept
under distinct names and the docstrings say how they differ.
"""
import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ graphs

def dense_interactions(edge_index, num_users, num_items, dtype=None):
    """The binary [U, I] interaction matrix R (a repeated edge counts once)."""
    r = torch.zeros(num_users, num_items, dtype=dtype)
    r[edge_index[0], edge_index[1]] = 1.0
    return r


def dense_bipartite(edge_index, num_users, num_items, weight=None, dtype=None):
    """Symmetric [U+I, U+I] user-item adjacency: 1 per edge, or weights summed over repeats."""
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=dtype)
    if weight is None:
        a[edge_index[0], edge_index[1] + num_users] = 1.0
        a[edge_index[1] + num_users, edge_index[0]] = 1.0
    else:
        w = weight.to(a.dtype)
        a.index_put_((edge_index[0], edge_index[1] + num_users), w, accumulate=True)
        a.index_put_((edge_index[1] + num_users, edge_index[0]), w, accumulate=True)
    return a


def dense_sym(adj):
    """D^-1/2 A D^-1/2 with row-sum degrees; rows and columns of degree 0 stay 0."""
    d = adj.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return dis[:, None] * adj * dis[None, :]


def dense_norm_adj(edge_index, num_users, num_items, weight=None, dtype=None):
    """LightGCN's normalised user-item adjacency: dense_sym of dense_bipartite."""
    return dense_sym(dense_bipartite(edge_index, num_users, num_items, weight, dtype))


def dense_knn(x, k, weighted):
    """MMRec's build_sim + top-k (self included) as dense [n, n]: cosines if weighted, else 1s."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.t()
    val, idx = sim.topk(k, dim=1)
    out = torch.zeros_like(sim)
    return out.scatter(1, idx, val if weighted else torch.ones_like(val))


# ------------------------------------------------------------------ blocks

def naive_fusion(fusion, views, collab):
    """ModalityAttentionFusion as a per-modality loop like the authors' code: (side, weights)."""
    scores = torch.cat([fusion.query(v) for v in views], -1)        # [N, M]
    w = torch.softmax(scores, -1)
    common = sum(w[:, m:m + 1] * v for m, v in enumerate(views))
    sep = [torch.sigmoid(fusion.prefer[m](collab)) * (v - common) for m, v in enumerate(views)]
    return (sum(sep) + common) / (len(views) + 1), w


# ------------------------------------------------------------------ losses

def naive_bpr(u, pos, neg):
    """BPR on embeddings, one negative per row: -mean log sigmoid(<u, pos> - <u, neg>)."""
    return -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()


def naive_info_nce(a, b, t):
    """In-batch InfoNCE of cosines, exp/log form: positive b[i], candidates all of b; mean."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    pos = torch.exp((a * b).sum(1) / t)
    tot = torch.exp(a @ b.t() / t).sum(1)
    return -torch.log(pos / tot).mean()


def naive_pool_info_nce(a, pool, ids, t):
    """naive_info_nce against a pool: positive pool[ids[i]], candidates all of pool; summed."""
    a, pool = F.normalize(a, dim=1), F.normalize(pool, dim=1)
    pos = torch.exp((a * pool[ids]).sum(1) / t)
    tot = torch.exp(a @ pool.t() / t).sum(1)
    return -torch.log(pos / tot).sum()


def ce_info_nce(a, p, ids, tau, reduction="sum"):
    """InfoNCE as cross-entropy of cosine logits a_i . p_j / tau, targets ids (log-sum-exp form)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(p, dim=-1).t() / tau
    return F.cross_entropy(logits, ids, reduction=reduction)


def naive_mmd(x, y, sigmas, normalize=True):
    """Biased MMD^2, a sum of Gaussian kernels over sigmas, in the authors' [B, B', d] broadcast."""
    if normalize:
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)

    def k(a, b):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)      # [B, B', d] broadcast
        return sum(torch.exp(-d / (2 * s * s)) for s in sigmas)

    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def naive_orthogonal_loss(a, b):
    """REARM's orthogonality: centred rows / (detached norms + 1e-6), mean squared a^T b."""
    a, b = a - a.mean(0), b - b.mean(0)
    na, nb = a.norm(dim=1, keepdim=True).detach(), b.norm(dim=1, keepdim=True).detach()
    return ((a / (na + 1e-6)).t() @ (b / (nb + 1e-6))).pow(2).mean()
