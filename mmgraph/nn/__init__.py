"""Neural-network layers of mmgraph (PyG house style)."""
from .conv import ItemItemConv, LightGCNConv  # noqa: F401
from .encoder import LightGCNEncoder  # noqa: F401
from .dream import DREAM  # noqa: F401
from .modality import (ModalityAttentionFusion, ModalityFeatures, ModalityGate,  # noqa: F401
                       ModalityProjector)
from .attention import ScalarTokenAttention  # noqa: F401
from .meta import LowRankMetaTransform  # noqa: F401
