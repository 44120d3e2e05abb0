"""Tests for the model registry (core/models): every registered model is checked automatically."""

from __future__ import annotations

import pytest
import torch
import torchvision

from core.models import (
    DefectModel,
    WeightsError,
    create_model,
    list_models,
    model_info,
    register_model,
)
from core.models.stratified import StratifiedConv2d, band_edges

MODEL_NAMES = [info.name for info in list_models()]

# Parameter-count ranges from the seed study (inclusive); models not listed need no range.
PARAMETER_RANGES = {
    "resnet18": (11_177_025, 11_177_025),
    "resnet50": (23_000_000, 26_000_000),
    "designed_resnet": (2_800_000, 2_950_000),
    "stratified": (3_050_000, 3_200_000),
}
EMBEDDING_DIMS = {"resnet18": 512, "resnet50": 2048, "designed_resnet": 32, "stratified": 32}


@pytest.fixture(scope="module")
def built_models() -> dict[str, DefectModel]:
    """One seeded model per name, in eval mode, shared by the read-only tests of this module."""
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in MODEL_NAMES}


def images(batch: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, height, width, generator=torch.Generator().manual_seed(seed))


def test_registry_holds_the_four_seed_models():
    assert {"resnet18", "resnet50", "designed_resnet", "stratified"} <= set(MODEL_NAMES)
    assert MODEL_NAMES == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_info_matches_the_built_model(name, built_models):
    info, model = model_info(name), built_models[name]
    assert info.name == name and info.description
    assert info.parameter_count == sum(p.numel() for p in model.parameters())
    assert info.embedding_dim == model.embedding_dim == model.head.in_features
    assert model.head.out_features == 1
    if name in PARAMETER_RANGES:
        low, high = PARAMETER_RANGES[name]
        assert low <= info.parameter_count <= high
        assert info.embedding_dim == EMBEDDING_DIMS[name]
    if info.seed_parameter_count is not None:  # our design stays within 5% of the seed's
        assert abs(info.parameter_count / info.seed_parameter_count - 1) < 0.05


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size", [(64, 66), (267, 275)], ids=["reduced", "full"])
def test_logit_and_embedding_shapes(name, size, built_models):
    model = built_models[name]
    batch = 2 if size[0] < 100 else 1
    with torch.no_grad():
        logits, embeddings = model.forward_with_embedding(images(batch, *size))
    assert logits.shape == (batch,)
    assert embeddings.shape == (batch, model.embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(embeddings).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_is_head_of_embed(name, built_models):
    model, x = built_models[name], images(2, 64, 70)
    with torch.no_grad():
        logits, embeddings = model.forward_with_embedding(x)
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(model.embed(x), embeddings)
        torch.testing.assert_close(model.head(embeddings)[:, 0], logits)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_step_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(images(2, 64, 66)), torch.tensor([0.0, 1.0]))
    loss.backward()
    unused = [k for k, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient: {unused[:5]}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_step_on_a_single_image(name):
    """A ragged last batch of one image must not crash (BatchNorm1d cannot use batch stats)."""
    model = create_model(name).train()
    logits = model(images(1, 64, 66))
    logits.sum().backward()
    assert logits.shape == (1,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_channels_last_bf16_autocast(name, built_models):
    model = built_models[name].to(memory_format=torch.channels_last)
    x = images(2, 64, 66).to(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits, embeddings = model.forward_with_embedding(x)
        with torch.no_grad():
            reference = model(x.contiguous())
    finally:
        model.to(memory_format=torch.contiguous_format)
    assert logits.shape == (2,) and embeddings.shape == (2, model.embedding_dim)
    assert torch.isfinite(logits.float()).all()
    torch.testing.assert_close(logits.float(), reference, atol=0.15, rtol=0.1)


@pytest.mark.parametrize("bad_shape", [(2, 3, 64, 64), (2, 64, 64), (1, 1, 63, 200)])
def test_wrong_input_shape_is_a_clear_error(bad_shape, built_models):
    with pytest.raises(ValueError, match="grayscale|at least 64"):
        built_models["designed_resnet"](torch.zeros(bad_shape))


def test_integer_images_are_rejected(built_models):
    with pytest.raises(ValueError, match="float"):
        built_models["designed_resnet"](torch.zeros(1, 1, 64, 64, dtype=torch.uint8))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet1'.*designed_resnet.*stratified"):
        create_model("resnet1")
    with pytest.raises(ValueError, match="valid names"):
        model_info("nope")


def test_registering_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18", description="duplicate")(lambda: None)


# --- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_own_checkpoint_round_trip(name, built_models, tmp_path):
    path = tmp_path / f"{name}.pt"
    torch.save(built_models[name].state_dict(), path)
    torch.manual_seed(123)  # a different initialisation, so loading must change the outputs
    loaded = create_model(name, weights=path).eval()
    x = images(2, 64, 66)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), built_models[name](x))


def test_resnet18_loads_torchvision_imagenet_style_weights(tmp_path):
    torch.manual_seed(5)
    imagenet_like = torchvision.models.resnet18(weights=None)  # 1000-class fc, random values
    with torch.no_grad():
        imagenet_like.bn1.running_mean.uniform_(-1, 1)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet_like.state_dict(), path)

    model = create_model("resnet18", weights=path).eval()
    state = model.state_dict()
    for key, value in imagenet_like.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(state[key], value, msg=key)
    assert model.fc.weight.shape == (1, 512)

    # Grayscale through the unchanged RGB stem == the torchvision net fed the channel 3 times.
    imagenet_like.fc = model.fc
    imagenet_like.eval()
    x = images(2, 64, 66)
    with torch.no_grad():
        torch.testing.assert_close(model(x), imagenet_like(x.repeat(1, 3, 1, 1))[:, 0])


def test_wrapped_checkpoint_keys_are_accepted(built_models, tmp_path):
    model = built_models["designed_resnet"]
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = create_model("designed_resnet", weights=path)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_garbage_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(WeightsError, match="garbage.pth cannot be read: not a PyTorch file"):
        create_model("resnet18", weights=path)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        create_model("resnet18", weights=tmp_path / "absent.pth")


def test_non_state_dict_file_is_a_clear_error(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(WeightsError, match="does not hold a state_dict"):
        create_model("designed_resnet", weights=path)


def test_another_models_weights_are_rejected_before_loading(built_models, tmp_path):
    path = tmp_path / "designed.pt"
    torch.save(built_models["designed_resnet"].state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit model ResNet18: .*missing keys"):
        create_model("resnet18", weights=path)

    model = create_model("stratified")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="unexpected keys"):
        model.load_weights(path)
    torch.testing.assert_close(model.state_dict(), before)  # nothing was half-loaded


def test_wrong_shape_is_reported(built_models, tmp_path):
    state = dict(built_models["resnet18"].state_dict())
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "bad-shape.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"wrong shapes: layer1\.0\.conv1\.weight"):
        create_model("resnet18", weights=path)


# --- the stratified convolution -----------------------------------------------------------


@pytest.mark.parametrize("size", [4, 5, 9, 17, 100])
def test_band_edges_cover_the_size_with_non_empty_bands(size):
    edges = band_edges(size, (1 / 3, 2 / 3))
    assert edges[0] == 0 and edges[-1] == size and len(edges) == 4
    assert all(b > a for a, b in zip(edges[:-1], edges[1:], strict=True))


def test_band_edges_reject_a_map_smaller_than_the_strata():
    with pytest.raises(ValueError, match="cannot hold 3 strata"):
        band_edges(2, (1 / 3, 2 / 3))


def test_zeroing_one_kernel_set_changes_only_its_stratum():
    torch.manual_seed(0)
    layer = StratifiedConv2d(4, 5, row_cuts=(0.25, 0.6), col_cuts=(0.5,))
    x = torch.randn(2, 4, 11, 13)
    stratum_map = layer.stratum_map(11, 13)
    assert sorted(stratum_map.unique().tolist()) == list(range(layer.num_strata))
    with torch.no_grad():
        before = layer(x)
        target = 3  # middle band, right half
        layer.kernel_set(target).zero_()
        after = layer(x)
    changed = (before - after).abs().amax(dim=(0, 1)) > 0
    assert torch.equal(changed, stratum_map == target)
    assert (after[:, :, stratum_map == target] == 0).all()


def test_stratified_conv_equals_per_stratum_masked_selection():
    """Definition check: run every kernel set over the whole map, pick each pixel's stratum."""
    torch.manual_seed(0)
    layer = StratifiedConv2d(3, 4)
    x = torch.randn(2, 3, 10, 12)
    with torch.no_grad():
        everywhere = torch.stack([torch.nn.functional.conv2d(x, layer.kernel_set(k), padding=1)
                                  for k in range(layer.num_strata)])  # (K, B, C, H, W)
        index = layer.stratum_map(10, 12).expand(1, 2, 4, 10, 12)
        expected = everywhere.gather(0, index)[0]
        torch.testing.assert_close(layer(x), expected)


def test_stratified_model_pools_each_stratum_separately(built_models):
    """Zeroing one stratum's kernels changes only that stratum's pooled features."""
    model = create_model("stratified").eval()
    model.load_state_dict(built_models["stratified"].state_dict())
    x = images(2, 128, 132)
    captured = []
    model.embedding.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    with torch.no_grad():
        model(x)
        model.stratified.kernel_set(4).zero_()
        model(x)
    channels = model.stratified.out_channels
    changed = (captured[0] - captured[1]).abs().amax(dim=0).view(-1, channels).amax(dim=1) > 0
    assert changed.tolist() == [k == 4 for k in range(model.stratified.num_strata)]
