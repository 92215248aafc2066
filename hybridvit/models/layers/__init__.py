"""Building blocks with structural reparameterisation."""
from .conv_bn import ConvBN, ConvNormAct
from .attention import AttentionBlock
from .conv_ffn import ConvFFN, DropPath, LayerScale2d
from .grid_pool import grid_avg_pool2d
from .large_kernel import ReparamLargeKernelConv
from .mobileone import MobileOneBlock
from .repmixer import PoolingMixer, RepCPE, RepMixer, RepMixerBlock
from .mobilevit_block import InvertedResidual, MobileViTBlock, TransformerLayer
