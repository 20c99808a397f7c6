"""Neural-network modules, losses and initialisers (``jitgrad.nn``), PyTorch-shaped."""

from . import functional, init, parallel, utils  # noqa: F401
from .adaptive import AdaptiveLogSoftmaxWithLoss  # noqa: E402,F401
from .bag import Bilinear, EmbeddingBag  # noqa: E402,F401
from .containers import Container, DataParallel, ParameterDict, ParameterList  # noqa: E402,F401
from .conv import AvgPool2d, Conv2d, MaxPool2d  # noqa: F401
from .conv_modules import *  # noqa: E402,F401,F403
from .dropout import (  # noqa: E402,F401
    AlphaDropout,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    FeatureAlphaDropout,
)
from .fractional import FractionalMaxPool2d, FractionalMaxPool3d  # noqa: E402,F401
from .layers import (  # noqa: F401
    CELU,
    ELU,
    GELU,
    GLU,
    SELU,
    Dropout,
    Flatten,
    Hardshrink,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Identity,
    LeakyReLU,
    Linear,
    LogSigmoid,
    LogSoftmax,
    Mish,
    ModuleDict,
    ModuleList,
    PReLU,
    ReLU,
    ReLU6,
    RReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Softmin,
    Softplus,
    Softshrink,
    Softsign,
    Tanh,
    Tanhshrink,
    Threshold,
    Unflatten,
)
from .lazy import *  # noqa: E402,F401,F403
from .linear_ce import LinearCrossEntropyLoss, LinearCrossEntropyOptions  # noqa: E402,F401
from .loss import (  # noqa: F401
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    CTCLoss,
    GaussianNLLLoss,
    HingeEmbeddingLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MarginRankingLoss,
    MSELoss,
    MultiLabelSoftMarginLoss,
    MultiMarginLoss,
    NLLLoss,
    NLLLoss2d,
    PoissonNLLLoss,
    SmoothL1Loss,
    SoftMarginLoss,
    TripletMarginLoss,
)
from .module import Buffer, Module, Parameter  # noqa: F401
from .more_layers import (  # noqa: E402,F401
    CosineSimilarity,
    MultiLabelMarginLoss,
    PairwiseDistance,
    Softmax2d,
    TripletMarginWithDistanceLoss,
)
from .multihead import MultiheadAttention  # noqa: F401
from .norm_modules import *  # noqa: E402,F401,F403
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm  # noqa: F401
from .pool_modules import *  # noqa: E402,F401,F403
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase  # noqa: F401
from .sparse import Embedding  # noqa: F401
from .transformer import (  # noqa: F401
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
