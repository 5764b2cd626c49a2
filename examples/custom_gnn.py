"""Write your own multimodal recommender with mmgraph's layers, in a few dozen lines.

    python examples/custom_gnn.py [--data synthetic:tiny] [--epochs 20]

``KnnLightGCN`` below is not part of the library: it imports mmgraph's
propagation layer and kNN builder into its own ``torch.nn.Module``
(LightGCN over ID embeddings, plus the text modality's item-item kNN graph
smoothing a projection of the text features), then trains with the project's
trainer and evaluates with its evaluator.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from mmgraph.data import load_dataset, modality_features
from mmgraph.graph import bipartite_adjacency, modality_knn_graph
from mmgraph.models.base import Embeddings, ModelConfig, Recommender, bpr_terms
from mmgraph.nn import ItemItemConv, LightGCNEncoder
from mmgraph.train import Trainer, TrainConfig


@dataclass
class KnnLightGCNConfig(ModelConfig):
    num_layers: int = 2
    modality: str = "text"
    knn_k: int = 10


class KnnLightGCN(Recommender):
    """LightGCN whose items also carry a kNN-smoothed projection of one modality."""
    name = "knn_lightgcn"
    config_class = KnnLightGCNConfig

    def __init__(self, data, config=None):
        super().__init__(data, config)
        c = self.config
        self.user = torch.nn.Embedding(self.num_users, c.embedding_dim)
        self.item = torch.nn.Embedding(self.num_items, c.embedding_dim)
        feats = modality_features(data)[c.modality]
        self.register_buffer("feats", feats)
        self.proj = torch.nn.Linear(feats.size(1), c.embedding_dim)
        self.encoder = LightGCNEncoder(c.num_layers)                  # mmgraph layer
        self.item_conv = ItemItemConv(num_layers=1)                   # mmgraph layer
        self.register_graph("ui", bipartite_adjacency(data))          # mmgraph builders
        self.register_graph("ii", modality_knn_graph(data, c.modality, k=c.knn_k))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user.weight)
        torch.nn.init.xavier_uniform_(self.item.weight)
        self.proj.reset_parameters()

    def forward(self):
        u, i = self.encoder(self.user.weight, self.item.weight, self.graph("ui"))
        side = self.item_conv(self.proj(self.feats), self.graph("ii"))
        return Embeddings(u, i + torch.nn.functional.normalize(side, dim=-1),
                          {"ego_user": self.user.weight, "ego_item": self.item.weight})

    def loss(self, batch, out):
        return bpr_terms(batch, out.user, out.item, out.extra["ego_user"], out.extra["ego_item"],
                         self.config.reg_weight)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic:tiny")
    p.add_argument("--epochs", type=int, default=20)
    a = p.parse_args(argv)
    data = load_dataset(a.data)
    torch.manual_seed(0)
    model = KnnLightGCN(data)
    result = Trainer(model, data, TrainConfig(epochs=a.epochs, batch_size=512, lr=5e-3)).fit()
    print(f"best epoch {result.best_epoch}: test", {k: round(v, 4) for k, v in result.test.items()})
    return result


if __name__ == "__main__":
    main()
