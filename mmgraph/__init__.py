"""mmgraph: multimodal recommendation on graphs with PyTorch Geometric.

Subpackages: :mod:`mmgraph.data` (HeteroData loaders, synthetic data),
:mod:`mmgraph.graph` (normalised adjacency, kNN and co-occurrence graphs),
:mod:`mmgraph.nn` (propagation layers, DREAM, modality blocks),
:mod:`mmgraph.losses`, :mod:`mmgraph.sampling`, :mod:`mmgraph.evaluation`,
:mod:`mmgraph.models` (the model zoo and its registry), :mod:`mmgraph.train`.
"""
__version__ = "0.1.0"

from . import data, evaluation, graph, losses, models, nn, sampling, train  # noqa: E402,F401
from .data import load_dataset  # noqa: E402,F401
from .evaluation import Evaluator, evaluate, recommend  # noqa: E402,F401
from .models import MODELS, get_model_class  # noqa: E402,F401
from .train import Trainer, TrainConfig  # noqa: E402,F401
