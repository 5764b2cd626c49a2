"""The model zoo. Importing this package registers every model in :data:`MODELS`."""
from .base import (MODELS, Batch, Embeddings, ModelConfig, Recommender, bpr_terms, build_model,
                   get_model_class, register)
from .bprmf import BPRMF, BPRMFConfig
from .lightgcn import LightGCN, LightGCNConfig
from .bm3 import BM3, BM3Config
from .vbpr import VBPR, VBPRConfig
from .freedom import FREEDOM, FREEDOMConfig
from .lattice import LATTICE, LATTICEConfig
from .mmgcn import MMGCN, MMGCNConfig
from .grcn import GRCN, GRCNConfig
from .slmrec import SLMRec, SLMRecConfig
from .mgcn import MGCN, MGCNConfig
from .lgmrec import LGMRec, LGMRecConfig
from .rearm import REARM, REARMConfig
from .mambarec import MambaRec, MambaRecConfig

__all__ = ["MODELS", "Batch", "Embeddings", "ModelConfig", "Recommender", "bpr_terms",
           "get_model_class", "build_model", "register", "BPRMF", "BPRMFConfig", "LightGCN", "LightGCNConfig",
           "BM3", "BM3Config", "VBPR", "VBPRConfig", "FREEDOM", "FREEDOMConfig", "LATTICE", "LATTICEConfig",
           "MMGCN", "MMGCNConfig", "GRCN", "GRCNConfig", "SLMRec", "SLMRecConfig", "MGCN", "MGCNConfig",
           "LGMRec", "LGMRecConfig", "REARM", "REARMConfig",
           "MambaRec", "MambaRecConfig"]
