"""The shared transformer core: attention, the one block, MLPs, norms and positions."""
from zoo.layers.attention import Attention, KVCache
from zoo.layers.block import Block, BlockConfig
from zoo.layers.mlp import MLP
from zoo.layers.norm import RMSNorm, make_norm
from zoo.layers.position import RotaryEmbedding, sinusoidal_table, sincos_2d_table

__all__ = ["Attention", "KVCache", "Block", "BlockConfig", "MLP", "RMSNorm", "make_norm",
           "RotaryEmbedding", "sinusoidal_table", "sincos_2d_table"]
