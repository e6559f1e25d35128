"""Every ConvNeXt variant as a row of data, the per-variant builders, ``create_model`` and ``list_models``.

The names are timm's (``convnext_tiny``, ``convnextv2_nano``); the isotropic models, which timm lacks,
follow the same pattern (``convnext_isotropic_small``).
"""

import dataclasses
import difflib
import fnmatch

from keras_convnext.applications.convnext import ConvNeXt
from keras_convnext.applications.model_head import POOLINGS
from keras_convnext.layers.stem import tiered_width
from keras_convnext.weights import list_presets, preset_for, preset_output, presets, unknown_preset_hint
from keras_convnext.weights.hugging_face_hub import HUB_PREFIX, hub_architecture, hub_config, hub_weights

# Every published variant uses these; count_parameters relies on them.
KERNEL_SIZE = 7
MLP_RATIO = 4
DEFAULT_CLASSES = 1000  # what the builders pass when classes is not given


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ConvNeXt variant: its architecture and the defaults of its official recipe.

    Example:
        >>> VARIANTS["convnext_tiny"].dims
        (96, 192, 384, 768)
    """

    name: str
    builder_name: str
    family: str  # "V1", "V2" or "isotropic"
    depths: tuple
    dims: tuple
    use_grn: bool = False
    layer_scale_init_value: float | None = 1e-6
    norm_epsilon: float = 1e-6
    stem_patch_size: int = 4
    stem_norm: bool = True
    head_hidden_size: int | None = None  # an MLP head (timm's convnext_large_mlp, for CLIP towers)
    stem_type: str = "patch"  # timm's overlapping stems: "overlap", "overlap_tiered", "overlap_act"
    norm_type: str = "layernorm"  # timm's "rmsnorm" / "simplenorm" models
    head_norm_first: bool = False  # timm's _hnf: norm, then pool
    # Stochastic depth of the official ImageNet-1k recipe (V1 and isotropic from scratch, V2 fine-tuning);
    # None where the official repositories publish none.
    recipe_drop_path_rate: float | None = None

    def architecture(self):
        """The arguments this variant passes to ``ConvNeXt``.

        Example:
            >>> VARIANTS["convnextv2_atto"].architecture()["use_grn"]
            True
        """
        return {
            "depths": self.depths,
            "dims": self.dims,
            "use_grn": self.use_grn,
            "layer_scale_init_value": self.layer_scale_init_value,
            "norm_epsilon": self.norm_epsilon,
            "stem_patch_size": self.stem_patch_size,
            "stem_norm": self.stem_norm,
            "head_hidden_size": self.head_hidden_size,
            "stem_type": self.stem_type,
            "norm_type": self.norm_type,
            "head_norm_first": self.head_norm_first,
        }


def _v1(name, builder_name, depths, dims, drop_path=None, **architecture):
    return Variant(name, builder_name, "V1", depths, dims, recipe_drop_path_rate=drop_path, **architecture)


def _v2(name, builder_name, depths, dims, drop_path=None):
    return Variant(
        name, builder_name, "V2", depths, dims, use_grn=True, layer_scale_init_value=None, recipe_drop_path_rate=drop_path
    )


def _isotropic(name, builder_name, depth, dim, drop_path):
    return Variant(
        name,
        builder_name,
        "isotropic",
        (depth,),
        (dim,),
        layer_scale_init_value=None,
        stem_patch_size=16,
        stem_norm=False,
        recipe_drop_path_rate=drop_path,
    )


_SMALL = (2, 2, 6, 2)
_TINY = (3, 3, 9, 3)
_DEEP = (3, 3, 27, 3)

VARIANTS = {
    v.name: v
    for v in (
        # timm's own small models (timm/models/convnext.py's model functions), their stems and norms as it sets them.
        _v1("convnext_zepto_rms", "ConvNeXtZeptoRMS", (2, 2, 4, 2), (32, 64, 128, 256), norm_type="simplenorm"),
        _v1("convnext_zepto_rms_ols", "ConvNeXtZeptoRMSOLS", (2, 2, 4, 2), (32, 64, 128, 256), norm_type="simplenorm",
            stem_type="overlap_act"),
        _v1("convnext_atto", "ConvNeXtAtto", _SMALL, (40, 80, 160, 320)),
        _v1("convnext_atto_ols", "ConvNeXtAttoOLS", _SMALL, (40, 80, 160, 320), stem_type="overlap_tiered"),
        _v1("convnext_atto_rms", "ConvNeXtAttoRMS", _SMALL, (40, 80, 160, 320), norm_type="rmsnorm"),
        _v1("convnext_femto", "ConvNeXtFemto", _SMALL, (48, 96, 192, 384)),
        _v1("convnext_femto_ols", "ConvNeXtFemtoOLS", _SMALL, (48, 96, 192, 384), stem_type="overlap_tiered"),
        _v1("convnext_pico", "ConvNeXtPico", _SMALL, (64, 128, 256, 512)),
        _v1("convnext_pico_ols", "ConvNeXtPicoOLS", _SMALL, (64, 128, 256, 512), stem_type="overlap_tiered"),
        _v1("convnext_nano", "ConvNeXtNano", (2, 2, 8, 2), (80, 160, 320, 640)),
        _v1("convnext_nano_ols", "ConvNeXtNanoOLS", (2, 2, 8, 2), (80, 160, 320, 640), stem_type="overlap"),
        _v1("convnext_tiny", "ConvNeXtTiny", _TINY, (96, 192, 384, 768), drop_path=0.1),
        _v1("convnext_tiny_hnf", "ConvNeXtTinyHNF", _TINY, (96, 192, 384, 768), head_norm_first=True),
        _v1("convnext_small", "ConvNeXtSmall", _DEEP, (96, 192, 384, 768), drop_path=0.4),
        _v1("convnext_base", "ConvNeXtBase", _DEEP, (128, 256, 512, 1024), drop_path=0.5),
        _v1("convnext_large", "ConvNeXtLarge", _DEEP, (192, 384, 768, 1536), drop_path=0.5),
        _v1("convnext_large_mlp", "ConvNeXtLargeMLP", _DEEP, (192, 384, 768, 1536), head_hidden_size=1536),
        _v1("convnext_xlarge", "ConvNeXtXLarge", _DEEP, (256, 512, 1024, 2048)),
        _v1("convnext_xxlarge", "ConvNeXtXXLarge", (3, 4, 30, 3), (384, 768, 1536, 3072), norm_epsilon=1e-5),
        _v2("convnextv2_atto", "ConvNeXtV2Atto", _SMALL, (40, 80, 160, 320), drop_path=0.1),
        _v2("convnextv2_femto", "ConvNeXtV2Femto", _SMALL, (48, 96, 192, 384)),
        _v2("convnextv2_pico", "ConvNeXtV2Pico", _SMALL, (64, 128, 256, 512)),
        _v2("convnextv2_nano", "ConvNeXtV2Nano", (2, 2, 8, 2), (80, 160, 320, 640)),
        _v2("convnextv2_tiny", "ConvNeXtV2Tiny", _TINY, (96, 192, 384, 768), drop_path=0.2),
        _v2("convnextv2_small", "ConvNeXtV2Small", _DEEP, (96, 192, 384, 768)),
        _v2("convnextv2_base", "ConvNeXtV2Base", _DEEP, (128, 256, 512, 1024), drop_path=0.1),
        _v2("convnextv2_large", "ConvNeXtV2Large", _DEEP, (192, 384, 768, 1536)),
        _v2("convnextv2_huge", "ConvNeXtV2Huge", _DEEP, (352, 704, 1408, 2816)),
        _isotropic("convnext_isotropic_small", "ConvNeXtIsotropicSmall", 18, 384, drop_path=0.1),
        _isotropic("convnext_isotropic_base", "ConvNeXtIsotropicBase", 18, 768, drop_path=0.2),
        _isotropic("convnext_isotropic_large", "ConvNeXtIsotropicLarge", 36, 1024, drop_path=0.5),
    )
}


FAMILIES = ("V1", "V2", "isotropic")


def list_models(filter=None, pretrained=False, family=None):
    """The names ``create_model`` accepts: the architectures, or with ``pretrained=True`` the pretrained tags
    (``"convnext_tiny.fb_in1k"``), as ``timm.list_models``. ``filter`` is a pattern (``"convnext*"``, fnmatch) or a
    family ("V1", "V2", "isotropic", also ``family=``).

    Example:
        >>> list_models("V2")[:2]
        ['convnextv2_atto', 'convnextv2_femto']
        >>> list_models("convnext_tiny*", pretrained=True)[:2]
        ['convnext_tiny.fb_in1k', 'convnext_tiny.fb_in22k_ft_in1k']
    """
    if filter in FAMILIES:
        family, filter = filter, None
    if family not in (None, *FAMILIES):
        raise ValueError(f"family must be one of {FAMILIES} or None; got {family!r}.")
    names = [name for name, variant in VARIANTS.items() if family in (None, variant.family)]
    if pretrained:
        names = [tag for name in names for tag in list_presets(name)]
    return names if filter is None else [name for name in names if fnmatch.fnmatchcase(name, str(filter))]


def get_variant(name):
    """The ``Variant`` row called ``name``; an unknown name raises ``ValueError`` with the closest names.

    Example:
        >>> get_variant("convnext_tiny").depths
        (3, 3, 9, 3)
    """
    if name in VARIANTS:
        return VARIANTS[name]
    close = difflib.get_close_matches(str(name), list(VARIANTS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown ConvNeXt variant {name!r}.{hint} Known variants: {', '.join(VARIANTS)}.")


def count_parameters(name, classes=1000, include_top=True, pooling=None):
    """The exact number of parameters of variant ``name``, computed from its row without building it, for the
    builder's ``classes``, ``include_top`` and ``pooling`` (without the top, ``"avg"`` / ``"max"`` keep the head's
    LayerNorm).

    Example:
        >>> count_parameters("convnext_tiny")
        28589128
        >>> count_parameters("convnext_tiny", include_top=False, pooling="avg") - count_parameters("convnext_tiny", include_top=False)
        1536
    """
    v = get_variant(name)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}.")
    patch, dims = v.stem_patch_size, v.dims
    norm = 2 if v.norm_type == "layernorm" else 1  # parameters per channel: gamma and beta, or gamma alone
    if v.stem_type == "patch":
        total = patch * patch * 3 * dims[0] + dims[0]
    else:  # two 3x3 convs, the first tiered_width(dims[0]) wide in "overlap_tiered"
        middle = tiered_width(dims[0]) if v.stem_type == "overlap_tiered" else dims[0]
        total = 9 * 3 * middle + middle + 9 * middle * dims[0] + dims[0]
    total += norm * dims[0] if v.stem_norm else 0
    for stage, (depth, width) in enumerate(zip(v.depths, dims)):
        if stage > 0:
            total += norm * dims[stage - 1] + 4 * dims[stage - 1] * width + width
        hidden = MLP_RATIO * width
        block = KERNEL_SIZE * KERNEL_SIZE * width + width  # depthwise conv
        block += norm * width
        block += width * hidden + hidden + hidden * width + width  # pointwise MLP
        block += 2 * hidden if v.use_grn else 0
        block += width if v.layer_scale_init_value is not None else 0
        total += depth * block
    if include_top or pooling is not None:
        total += norm * dims[-1]  # head_layernorm
    if include_top:
        features = dims[-1]
        if v.head_hidden_size:
            total += features * v.head_hidden_size + v.head_hidden_size
            features = v.head_hidden_size
        total += features * classes + classes
    return total


def create_model(model_name, /, **kwargs):
    """Builds the variant called ``model_name`` (timm's naming); ``kwargs`` go to its builder.

    A pretrained tag (``"convnext_tiny.fb_in1k"``, ``list_models(pretrained=True)``) builds that tag's model, its
    classes, input size and normalisation, and loads its weights; ``weights=None`` gives the same model untrained. A
    backbone's tag (DINOv3) builds it without a top, pooled, unless ``include_top``/``pooling`` say otherwise.
    ``"hf-hub:<owner>/<name>"`` builds the ConvNeXt a Hugging Face repository's ``config.json`` describes and loads its
    weights (``facebook/convnext-tiny-224``, ``facebook/convnextv2-tiny-22k-384``, ``facebook/dinov3-convnext-...``).

    Example:
        >>> model = create_model("convnext_atto", classes=10, input_shape=(64, 64, 3))
        >>> create_model("convnext_atto.d2_in1k", weights=None).input_shape  # the tag's model, untrained
        (None, 224, 224, 3)
    """
    if isinstance(model_name, str) and model_name.startswith(HUB_PREFIX):
        return _create_from_hub(model_name.removeprefix(HUB_PREFIX), kwargs)
    if isinstance(model_name, str) and "." in model_name:
        return _create_tagged(model_name, kwargs)
    return build_variant(get_variant(model_name), **kwargs)


def _create_from_hub(repo, kwargs):
    """A Hugging Face repository's ConvNeXt: its config's architecture (the variant of that shape, else the generic
    builder), its classifier or a pooled backbone, and its weights (``weights=None``: untrained)."""
    weights = kwargs.pop("weights", "hub")
    if weights not in (None, "hub"):
        raise ValueError(
            f"create_model('hf-hub:{repo}') loads that repository's weights; weights= may only be None (the same model "
            f"untrained), got {weights!r}."
        )
    architecture = hub_architecture(hub_config(repo))
    family = architecture.pop("family")
    arguments = {**architecture, **kwargs, "weights": hub_weights(repo) if weights else None}
    # Hugging Face's ConvNeXts are the plain ones: patch stem, LayerNorm, norm after pooling, linear head.
    plain = {"stem_type": "patch", "norm_type": "layernorm", "head_norm_first": False, "head_hidden_size": None}
    match = next((v for v in VARIANTS.values()
                  if (v.family, v.depths, v.dims) == (family, arguments["depths"], arguments["dims"])
                  and all(getattr(v, key) == value for key, value in plain.items())), None)
    if match is None:
        return ConvNeXt(**arguments)
    for key in match.architecture():
        arguments.pop(key, None)
    return build_variant(match, **arguments)


def _create_tagged(tag, kwargs):
    record = presets().get(tag)
    if record is None:
        raise ValueError(
            f"Unknown pretrained tag {tag!r}.{unknown_preset_hint(tag)} keras_convnext.list_models(pretrained=True) "
            "lists them; an architecture name has no '.' (keras_convnext.list_models())."
        )
    weights = kwargs.pop("weights", tag)
    if weights not in (None, tag):
        raise ValueError(
            f"create_model({tag!r}) builds that tag's model with its own weights; weights= may only be None (the same "
            f"model untrained), got {weights!r}. Other weights go with the architecture: "
            f"create_model({record['variant']!r}, weights=...)."
        )
    if record["classes"] is None:  # a feature backbone: what timm's create_model gives for it (num_classes=0)
        kwargs = {"include_top": False, "pooling": _backbone_pooling(record), **kwargs}
    return build_variant(get_variant(record["variant"]), weights=tag, load_preset=weights is not None, **kwargs)


def _backbone_pooling(record):
    """A feature backbone's pooling: ``"avg"`` (pooled and normalised by its final norm), or ``None`` (the last stage's
    map) for one that has no final norm (``"final_norm": false``: ConvNeXt-V2's FCMAE encoders)."""
    return "avg" if record.get("final_norm", True) else None


def build_variant(variant, *, name=None, weights=None, load_preset=True, **kwargs):
    """Builds ``variant`` (a ``Variant`` row) with ``ConvNeXt``; ``kwargs`` may override its architecture.

    ``weights="imagenet"`` means the variant's default preset; a preset of another variant is refused;
    ``load_preset=False`` builds a preset's model without its weights. A preset
    also sets the input normalisation (its mean and std), the default input size (its eval size), the classes (its
    classifier's, unless ``classes`` asks for another number) and, for a CLIP image tower, the embedding head.

    Example:
        >>> model = build_variant(VARIANTS["convnextv2_atto"], include_top=False)
    """
    preset = preset_for(weights, variant.name)
    if preset:
        kwargs = _preset_arguments(preset, variant, kwargs)
        weights = preset if load_preset else None
    return ConvNeXt(weights=weights, **{**variant.architecture(), **kwargs}, name=name or variant.name)


def _preset_arguments(preset, variant, kwargs):
    """``kwargs`` completed by what preset ``preset`` fixes; ``ValueError`` (before any building) where they disagree."""
    record = presets()[preset]
    architecture = variant.architecture()

    def plain(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    changed = [key for key, value in architecture.items() if key in kwargs and plain(kwargs[key]) != plain(value)]
    if changed:
        raise ValueError(
            f"Preset {preset!r} holds {variant.name} weights; {', '.join(f'{k}={kwargs[k]!r}' for k in changed)} "
            f"builds another architecture (the preset's: {', '.join(f'{k}={architecture[k]!r}' for k in changed)})."
        )
    include_top = kwargs.get("include_top", True)
    if record["classes"] is None and include_top:
        if _backbone_pooling(record) is None:
            raise ValueError(
                f"Preset {preset!r} is an encoder with neither a classifier nor a final norm: build it with "
                "include_top=False, pooling=None (the last stage's feature map), or fine-tune it with a new head."
            )
        raise ValueError(
            f"Preset {preset!r} is a feature backbone without a classifier: build it with include_top=False, "
            "pooling='avg' (keras_convnext.dense_features gives its embedding, patch tokens and stage maps)."
        )
    preset_defaults = {
        "pixel_mean": record["eval"]["mean"],
        "pixel_std": record["eval"]["std"],
        "default_size": record["eval"]["input_size"],
    }
    kwargs = {**preset_defaults, **kwargs}
    if include_top and preset_output(preset) != "embedding" and kwargs.get("classes", DEFAULT_CLASSES) == DEFAULT_CLASSES:
        # classes left at its default means the preset's own classifier (21841 for an ImageNet-22k head), never a
        # random 1000-class one; another number asks for a new classifier (fine-tuning), with a warning.
        kwargs["classes"] = record["classes"]
    if preset_output(preset) == "embedding" and include_top:
        width = record["classes"]
        if kwargs.get("classes", DEFAULT_CLASSES) not in (DEFAULT_CLASSES, width):
            raise ValueError(
                f"Preset {preset!r} is a CLIP image tower projecting to {width}-dimensional embeddings; build it "
                f"with classes={width} (the default for this preset), or include_top=False and your own head."
            )
        if kwargs.get("classifier_activation", "softmax") not in ("softmax", None):
            raise ValueError(
                f"Preset {preset!r} is a CLIP image tower: its output is an embedding with no activation; got "
                f"classifier_activation={kwargs['classifier_activation']!r}."
            )
        kwargs.update(classes=width, classifier_activation=None, head_output="embedding")
    return kwargs



# The docstring examples of larger builders are not run by the test suite: they would build 10M-846M parameters.
_BUILT_IN_EXAMPLES = 4_000_000
_SKIP_BUILDING = "  # builds the full-size model  # doctest: +SKIP"


def _builder(name):
    variant = VARIANTS[name]

    def builder(
        include_top=True,
        include_preprocessing=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=DEFAULT_CLASSES,
        classifier_activation="softmax",
        name=None,
        **kwargs,
    ):
        return build_variant(
            variant,
            include_top=include_top,
            include_preprocessing=include_preprocessing,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            **kwargs,
        )

    builder.__name__ = builder.__qualname__ = variant.builder_name
    builder.__doc__ = (
        f"Builds {variant.name} ({variant.family}): depths {variant.depths}, dims {variant.dims}, "
        f"{count_parameters(name):,} parameters with the 1000-class head.\n\n"
        "Arguments are those of `keras.applications.ConvNeXtTiny` (`include_top`, `include_preprocessing`,\n"
        "`weights`, `input_tensor`, `input_shape`, `pooling`, `classes`, `classifier_activation`, `name`) and,\n"
        "as keywords, any other argument of `keras_convnext.applications.ConvNeXt` (`drop_path_rate`,\n"
        "`layer_scale_init_value`, `head_init_scale`, `dropout_rate`, `data_format`, ...).\n\n"
        "Example:\n"
        f"    >>> model = {variant.builder_name}(classes=10, input_shape=(64, 64, 3), drop_path_rate=0.1)"
        f"{_SKIP_BUILDING if count_parameters(name) > _BUILT_IN_EXAMPLES else ''}\n"
        f"    >>> model.output_shape{_SKIP_BUILDING if count_parameters(name) > _BUILT_IN_EXAMPLES else ''}\n"
        "    (None, 10)\n"
    )
    return builder


ConvNeXtZeptoRMS = _builder("convnext_zepto_rms")
ConvNeXtZeptoRMSOLS = _builder("convnext_zepto_rms_ols")
ConvNeXtAtto = _builder("convnext_atto")
ConvNeXtAttoOLS = _builder("convnext_atto_ols")
ConvNeXtAttoRMS = _builder("convnext_atto_rms")
ConvNeXtFemto = _builder("convnext_femto")
ConvNeXtFemtoOLS = _builder("convnext_femto_ols")
ConvNeXtPico = _builder("convnext_pico")
ConvNeXtPicoOLS = _builder("convnext_pico_ols")
ConvNeXtNano = _builder("convnext_nano")
ConvNeXtNanoOLS = _builder("convnext_nano_ols")
ConvNeXtTiny = _builder("convnext_tiny")
ConvNeXtTinyHNF = _builder("convnext_tiny_hnf")
ConvNeXtSmall = _builder("convnext_small")
ConvNeXtBase = _builder("convnext_base")
ConvNeXtLarge = _builder("convnext_large")
ConvNeXtLargeMLP = _builder("convnext_large_mlp")
ConvNeXtXLarge = _builder("convnext_xlarge")
ConvNeXtXXLarge = _builder("convnext_xxlarge")
ConvNeXtV2Atto = _builder("convnextv2_atto")
ConvNeXtV2Femto = _builder("convnextv2_femto")
ConvNeXtV2Pico = _builder("convnextv2_pico")
ConvNeXtV2Nano = _builder("convnextv2_nano")
ConvNeXtV2Tiny = _builder("convnextv2_tiny")
ConvNeXtV2Small = _builder("convnextv2_small")
ConvNeXtV2Base = _builder("convnextv2_base")
ConvNeXtV2Large = _builder("convnextv2_large")
ConvNeXtV2Huge = _builder("convnextv2_huge")
ConvNeXtIsotropicSmall = _builder("convnext_isotropic_small")
ConvNeXtIsotropicBase = _builder("convnext_isotropic_base")
ConvNeXtIsotropicLarge = _builder("convnext_isotropic_large")

# A row without its builder line above fails here, at import.
BUILDERS = {variant.builder_name: globals()[variant.builder_name] for variant in VARIANTS.values()}

__all__ = [
    "BUILDERS",
    "VARIANTS",
    "Variant",
    "build_variant",
    "count_parameters",
    "create_model",
    "get_variant",
    "list_models",
    *BUILDERS,
]
