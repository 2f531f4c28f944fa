"""Registry: register/create/list, wildcards, metadata filters, duplicates, suggestions, plugins."""
import subprocess
import sys
import textwrap

import pytest

import zoo
from zoo.registry import Registry


def test_register_create_list_and_filters():
    reg = Registry("widget")

    @reg.register("small_round", shape="round", size=1)
    def small_round(scale=1):
        return ("round", scale)

    @reg.register("big_square", shape="square", size=3)
    def big_square():
        return "square"

    assert reg.create("small_round", scale=2) == ("round", 2)
    assert reg.list() == ["big_square", "small_round"]
    assert reg.list("small_*") == ["small_round"]
    assert reg.list(shape="square") == ["big_square"]
    assert reg.list("*", shape="round", size=3) == []
    assert reg.meta("big_square") == {"shape": "square", "size": 3}


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_unknown_name_suggests_closest():
    with pytest.raises(KeyError, match="vit_tiny"):
        zoo.create_backbone("vit_tinny")


def test_builtin_metadata_filters():
    assert set(zoo.list_backbones(modality="audio")) >= {"speech_encoder_tiny", "speech_encoder_small"}
    causal = zoo.list_backbones(causal=True)
    assert "text_decoder_tiny" in causal and "text_encoder_tiny" not in causal
    assert zoo.list_backbones("vit_*") == ["vit_base", "vit_small", "vit_tiny", "vit_tiny_conv", "vit_tiny_spt_lsa"]


def test_prefix_resolvers_list_and_create():
    assert "timm/resnet18" in zoo.list_backbones("timm/resnet1*")
    assert "torchaudio/wav2vec2_base" in zoo.list_backbones("torchaudio/*")
    with pytest.raises(KeyError):
        zoo.create_backbone("timm/not_a_model_xyz")


def test_fresh_interpreter_finds_plugins_through_entry_points(tmp_path):
    """In a new interpreter: a third-party package registering through the zoo.plugins group is found,
    and the project's own heads load the same way (``heads`` is never imported by hand)."""
    (tmp_path / "myplugin.py").write_text(textwrap.dedent("""
        import zoo
        @zoo.register_head("plugin_head", accepts=("text",))
        def plugin_head(backbone):
            return "made by plugin"
    """))
    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[zoo.plugins]\nmyplugin = myplugin\n")
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import zoo
        assert "heads" not in sys.modules
        m = zoo.create_model(backbone="vit_tiny", head="classification",
                             backbone_args={{"img_size": 28, "patch_size": 4, "depth": 1}}, num_classes=10)
        print(type(m.head).__name__)
        print(zoo.HEADS.create("plugin_head", backbone=None))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ClassificationHead", "made", "by", "plugin"]
