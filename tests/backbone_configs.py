"""Reduced-size arguments so every registered backbone can be built and run in tests."""
from __future__ import annotations

TEXT_VOCAB = 50   # every small text backbone's vocabulary
IMG_SIZE = 32     # the image size every small image backbone is fed

SMALL_ARGS = {
    "text": dict(vocab_size=TEXT_VOCAB, dim=32, depth=1, heads=2),
    "image": dict(img_size=IMG_SIZE, patch_size=8, dim=32, depth=1, heads=2),
    "audio": dict(dim=32, depth=1, heads=2),
}
TEXT_GPT2 = dict(vocab_size=TEXT_VOCAB, dim=32, depth=1, heads=2, max_len=64)

# Adapters through the prefix resolvers: a few representative names with tiny configurations.
ADAPTER_ARGS = {
    "timm/resnet18": dict(),
    "timm/test_vit": dict(),
    "torchaudio/conformer": dict(dim=32, depth=1, heads=2, n_mels=40),
    "torchaudio/wav2vec2_model": dict(
        extractor_mode="group_norm", extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2)],
        extractor_conv_bias=False, encoder_embed_dim=32, encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=1, encoder_num_heads=2,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=64, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0, aux_num_out=None),
}

# The wrapped transformers backbone, exercised with a tiny random BERT.
WRAPPED_ARGS = dict(config=dict(model_type="bert", vocab_size=TEXT_VOCAB, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))


def small_args(name: str, modality: str) -> dict:
    """Reduced arguments for a registered backbone name."""
    if name in ADAPTER_ARGS:
        return dict(ADAPTER_ARGS[name])
    if name == "transformers":
        return dict(WRAPPED_ARGS)
    if name == "text_decoder_gpt2":
        return dict(TEXT_GPT2)
    return dict(SMALL_ARGS[modality])
