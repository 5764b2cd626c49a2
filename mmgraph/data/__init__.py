r"""Datasets of mmgraph: one :class:`~torch_geometric.data.HeteroData` layout
(:mod:`.hetero`), loaders and writers of the on-disk layouts (:mod:`.io`:
MMRec, ``[2, E]``; :mod:`.formats`: DiffMM/MMSSL, LATTICE JSON, RecBole;
:mod:`.layouts`: detection, :func:`load_dataset`, conversion), a PyG dataset
class with a processed cache (:mod:`.dataset`), validation
(:mod:`.validate`), raw-log preprocessing (:mod:`.preprocess`), a seeded
synthetic generator (:mod:`.synthetic`) and summary statistics (:mod:`.stats`).

Example::

    from mmgraph.data import load_dataset, dataset_stats, format_stats
    data = load_dataset("synthetic:baby?seed=3")   # or a dataset folder in any layout
    print(format_stats(dataset_stats(data)))
"""
from .hetero import (FEATURE_PREFIX, INTERACTS, ITEM, REV_INTERACTS, SPLITS, USER, build_hetero,
                     feature_key, modality_features, modality_names, modality_shapes, num_items,
                     num_users,
                     similar_edge_type, split_attr_key, split_edge_attr, split_edge_index)
from .dataset import CACHE_ENV, MultimodalRecDataset
from .formats import read_diffmm, read_json, read_recbole, write_diffmm, write_json, write_recbole
from .io import MMREC_COLUMNS, assemble, read_features, read_mmrec, read_npy_splits, write_mmrec, write_npy_splits
from .layouts import (LAYOUTS, convert_dataset, dataset_or_synthetic, detect_layout, load_dataset,
                      read_layout)
from .preprocess import (PreprocessResult, encode_text, factorize, k_core_filter, per_user_split,
                         preprocess_interactions, split_sizes)
from .stats import dataset_stats, feature_stats, format_stats
from .synthetic import (PRESETS, SyntheticFactors, generate_synthetic, parse_synthetic_spec,
                        synthetic_dataset)
from .validate import (DataValidationError, ValidatedInteractions, validate_features,
                       validate_hetero, validate_interactions)

__all__ = [
    # layout (hetero.py)
    "USER", "ITEM", "INTERACTS", "REV_INTERACTS", "FEATURE_PREFIX", "SPLITS",
    "feature_key", "similar_edge_type", "num_users", "num_items", "modality_names",
    "modality_features", "modality_shapes", "split_edge_index", "split_attr_key", "split_edge_attr", "build_hetero",
    # io, formats, layouts, dataset
    "MMREC_COLUMNS", "dataset_or_synthetic", "load_dataset", "detect_layout", "read_mmrec", "read_npy_splits",
    "read_features", "write_mmrec", "write_npy_splits", "assemble", "LAYOUTS", "read_layout",
    "convert_dataset", "read_diffmm", "read_json", "read_recbole", "write_diffmm", "write_json",
    "write_recbole", "MultimodalRecDataset", "CACHE_ENV",
    # validation
    "DataValidationError", "ValidatedInteractions", "validate_interactions", "validate_features",
    "validate_hetero",
    # preprocessing
    "preprocess_interactions", "PreprocessResult", "k_core_filter", "split_sizes",
    "per_user_split", "factorize", "encode_text",
    # synthetic
    "generate_synthetic", "synthetic_dataset", "parse_synthetic_spec", "PRESETS",
    "SyntheticFactors",
    # stats
    "dataset_stats", "feature_stats", "format_stats",
]
