r"""Graph builders over the project's :class:`~torch_geometric.data.HeteroData`.

* :class:`SparseAdj`: the CSR sparse matrix every builder returns and every
  propagation layer accepts (:meth:`SparseAdj.to_edge_index`: the same graph as
  a PyG :class:`~torch_geometric.EdgeIndex` for any ``MessagePassing`` layer);
* user-item: :func:`bipartite_adjacency`, :func:`bipartite_adjacency_from_edges`,
  :func:`interaction_matrix`, :func:`bipartite_gcn_norm`,
  :func:`prune_edges_by_degree`;
* item-item kNN (exact, or approximate with faiss: ``method=``, :data:`KNN_METHODS`):
  :func:`knn_topk`, :func:`knn_graph`, :func:`knn_adjacency`,
  :func:`modality_knn_graph`, :func:`mix_adjacency`, :func:`modality_mix_weights`;
* co-occurrence / interest: :func:`cooccurrence_graph`, :func:`user_interest_graph`,
  :func:`user_profiles`;
* caching: every builder's result is memoised on the data; :func:`disk_cache`
  also keeps it on disk, keyed by a fingerprint of the data and the options,
  for other processes and later runs (sweeps use it).
"""
from ._cache import GRAPH_CACHE_ENV, clear_cache, disk_cache, disk_cache_dir, disk_cache_stats
from .bipartite import (bipartite_adjacency, bipartite_adjacency_from_edges, bipartite_gcn_norm,
                        interaction_matrix, interaction_matrix_from_edges, prune_edges_by_degree)
from .cooccurrence import (cooccurrence_graph, cooccurrence_graph_from_edges, cooccurrence_topk,
                           user_interest_graph, user_profiles)
from .knn import (KNN_METHODS, check_knn_method, default_chunk_size, faiss_nlist, knn_adjacency, knn_graph,
                  knn_topk, modality_knn_graph, normalize_edge_weight)
from .sparse import SparseAdj, homography_mix, mix_adjacency, modality_mix_weights

__all__ = [
    "SparseAdj", "mix_adjacency", "modality_mix_weights", "homography_mix",
    "bipartite_adjacency", "bipartite_adjacency_from_edges", "interaction_matrix",
    "interaction_matrix_from_edges", "bipartite_gcn_norm", "prune_edges_by_degree",
    "knn_topk", "knn_graph", "knn_adjacency", "modality_knn_graph", "normalize_edge_weight",
    "default_chunk_size", "faiss_nlist", "KNN_METHODS", "check_knn_method",
    "cooccurrence_graph", "cooccurrence_graph_from_edges", "cooccurrence_topk",
    "user_interest_graph", "user_profiles",
    "clear_cache", "disk_cache", "disk_cache_dir", "disk_cache_stats", "GRAPH_CACHE_ENV",
]
