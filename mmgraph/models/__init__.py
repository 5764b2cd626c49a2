"""The model zoo. Importing this package registers every model in :data:`MODELS`."""
from .base import MODELS, Batch, Embeddings, ModelConfig, Recommender, bpr_terms, get_model_class, register
from .bprmf import BPRMF, BPRMFConfig
from .lightgcn import LightGCN, LightGCNConfig

__all__ = ["MODELS", "Batch", "Embeddings", "ModelConfig", "Recommender", "bpr_terms",
           "get_model_class", "register", "BPRMF", "BPRMFConfig", "LightGCN", "LightGCNConfig"]
