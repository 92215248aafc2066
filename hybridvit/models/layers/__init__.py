"""Building blocks with structural reparameterisation."""
from .conv_bn import ConvBN, ConvNormAct
from .attention import AttentionBlock
from .conv_ffn import ConvFFN, DropPath, LayerScale2d
from .grid_pool import grid_avg_pool2d
from .large_kernel import ReparamLargeKernelConv
from .mobileone import MobileOneBlock
from .repmixer import PoolingMixer, RepCPE, RepMixer, RepMixerBlock
from .mobilevit_block import InvertedResidual, MobileViTBlock, TransformerLayer
from .mobilevitv2_block import LinearSelfAttention, LinearTransformerLayer, MobileViTv2Block
from .mobilevitv3_block import MobileViTv3Block
