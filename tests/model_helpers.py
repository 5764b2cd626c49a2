"""What the per-model tests (tests/models/test_<model>.py) share: hand-sized data,
small configs and batches. The fixtures over this data (``data_12x9``,
``data_24x18``) are in tests/conftest.py; the dense references in oracles.py."""
import torch

from mmgraph.data import build_hetero
from mmgraph.models.base import Batch
from mmgraph.models.grcn import GRCN
from mmgraph.models.lgmrec import LGMRec
from mmgraph.models.mgcn import MGCN
from mmgraph.models.mmgcn import MMGCN
from mmgraph.models.slmrec import SLMRec
from mmgraph.sampling import InteractionLoader


# -------------------------------------------- 12 users, 9 items (BM3, VBPR, FREEDOM, LATTICE)

def make_data_12x9():
    """A hand-sized dataset (dense references are cheap): 12 users, 9 items, 2 modalities."""
    g = torch.Generator().manual_seed(0)
    U, I = 12, 9
    users = torch.arange(U).repeat_interleave(3)
    items = torch.randint(0, I, (3 * U,), generator=g)
    items[:I] = torch.arange(I)                     # every item has an interaction
    ei = torch.unique(torch.stack([users, items]), dim=1)
    feats = {"image": torch.randn(I, 7, generator=g), "text": torch.randn(I, 5, generator=g)}
    return build_hetero(U, I, ei, features=feats)


def first_batch(data, num_neg=1, batch_size=256, seed=0):
    """The first batch of a seeded InteractionLoader."""
    gen = torch.Generator().manual_seed(seed)
    return next(iter(InteractionLoader(data, batch_size=batch_size, num_neg=num_neg,
                                       generator=gen)))


def first_batch_for(model, data, **kw):
    """first_batch with negatives only for the models that use them."""
    return first_batch(data, num_neg=1 if model.uses_negatives else 0, **kw)


# ------------------------------ 24 users, 18 items (MMGCN, GRCN, SLMRec, MGCN, LGMRec)

U, I = 24, 18


def make_data_24x18(modalities=("image", "text"), dims=(20, 10), seed=0, isolated_item=False):
    g = torch.Generator().manual_seed(seed)
    n_items = I - 1 if isolated_item else I
    users = torch.arange(U).repeat_interleave(4)
    items = torch.randint(0, n_items, (users.numel(),), generator=g)
    items[:n_items] = torch.arange(n_items)          # every (used) item has an edge
    ei = torch.unique(torch.stack([users, items]), dim=1)
    feats = {m: torch.randn(I, dm, generator=g) for m, dm in zip(modalities, dims)}
    return build_hetero(U, I, ei, features=feats)


def small_config(cls, **kw):
    """Small configs (fewer dims) so that the tests stay fast."""
    base = {MMGCN: dict(embedding_dim=16, latent_dim=12),
            GRCN: dict(embedding_dim=16, latent_dim=8),
            SLMRec: dict(embedding_dim=16),
            MGCN: dict(embedding_dim=16, knn_k=4),
            LGMRec: dict(embedding_dim=16, feat_embed_dim=16)}[cls]
    return cls.config_class(**{**base, **kw})


def make_batch(model, n=16, seed=1, num_neg=1):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, model.num_users, (n,), generator=g)
    pos = torch.randint(0, model.num_items, (n,), generator=g)
    if not model.uses_negatives:
        return Batch(users, pos, None)
    shape = (n,) if num_neg == 1 else (n, num_neg)
    return Batch(users, pos, torch.randint(0, model.num_items, shape, generator=g))


def total(terms):
    return sum(terms.values())
