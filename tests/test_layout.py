"""The layering of the code, read from its imports, and checkpoints that outlive moves of the code.

Layers, bottom up: dgbench/ (the framework: protocols, data, checkpoints, evaluation) < models/nets/
(plain networks) < models/ (the families) < the entry points (train.py, evaluate.py, sample.py, benchmarks/, scripts/).
A layer imports only from layers below it; the framework finds families through checkpoints and
configs (dotted class paths), never by importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from dgbench.checkpoint import MOVED_CLASSES, family_class, load_model
from dgbench.data import default_data_root, load_split, to_float
from dgbench.evaluation.features import DEFAULT_FEATURE_NET
from dgbench.family import public_class_path
from dgbench.runtime import compose_config
from tests.helpers import ROOT, TINY, TINY_MODELS

ENTRY_POINTS = {"train", "evaluate", "sample", "benchmarks", "scripts"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports in functions too), relative ones resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return modules_in(path.read_text(), package)


def modules_in(source: str, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..y import z
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # from models import vae
    return found


def python_files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/: has it moved?"
    return files


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_import_reader_sees_every_form_of_import() -> None:
    source = "import models.vae\nfrom models import gan\ndef f():\n    from ..nets import unet\n    import train\n"
    found = modules_in(source, "models.diffusion")
    assert {"models.vae", "models.gan", "models.nets.unet", "train"} <= found
    assert modules_in("from . import conv", "models.nets") >= {"models.nets", "models.nets.conv"}


@pytest.mark.parametrize("path", python_files("dgbench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_framework_imports_no_family_and_no_entry_point(path: Path) -> None:
    forbidden = sorted(m for m in imported_modules(path) if top(m) in {"models", *ENTRY_POINTS})
    assert not forbidden, f"{path.relative_to(ROOT)} imports {forbidden}"


@pytest.mark.parametrize("path", python_files("models"), ids=lambda p: str(p.relative_to(ROOT)))
def test_families_import_no_entry_point_and_networks_no_family(path: Path) -> None:
    modules = imported_modules(path)
    assert not sorted(m for m in modules if top(m) in ENTRY_POINTS), f"{path.relative_to(ROOT)} imports an entry point"
    if path.parent.name == "nets":
        families = sorted(m for m in modules if top(m) == "models" and not m.startswith("models.nets"))
        assert not families, f"{path.relative_to(ROOT)} imports {families}: networks know nothing of the families"


# --- checkpoints written before a move keep loading ---------------------------------------------------
# The class path each family's checkpoints have recorded since before the layout change (bd452da):
# it must keep importing the family, and new checkpoints must keep writing it.
RECORDED_CLASS_PATHS = {
    "logistic_regression": "models.logistic_regression.LogisticRegression",
    "resnet": "models.resnet.ResNetClassifier",
    "naive_bayes": "models.naive_bayes.BernoulliNaiveBayes",
    "vae": "models.vae.ConditionalVAE",
    "gan": "models.gan.ConditionalGAN",
    "pixelcnn": "models.pixelcnn.ConditionalPixelCNN",
    "diffusion": "models.diffusion.DiffusionModel",  # models/diffusion.py then; a sub-package now
}


@pytest.mark.parametrize("family", sorted(RECORDED_CLASS_PATHS))
def test_recorded_class_paths_still_name_the_families(family: str) -> None:
    cls = family_class(RECORDED_CLASS_PATHS[family])
    assert cls.family == family
    assert public_class_path(cls) == RECORDED_CLASS_PATHS[family]  # what on_save_checkpoint writes


@pytest.mark.parametrize(("old_path", "family"), sorted((old, new.split(".")[1]) for old, new in MOVED_CLASSES.items()))
def test_a_checkpoint_naming_a_renamed_family_file_loads(old_path: str, family: str, tmp_path: Path) -> None:
    """models/forest.py and models/finetuned.py took their families' names; what they wrote still loads."""
    torch.manual_seed(0)
    model = instantiate(compose_config([*TINY, *TINY_MODELS[family]], tmp_path).model, _convert_="all")
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["dgbench"]["class_path"] == MOVED_CLASSES[old_path]  # new checkpoints write the new path
    checkpoint["dgbench"]["class_path"] = old_path
    torch.save(checkpoint, tmp_path / "old.ckpt")

    reloaded = load_model(tmp_path / "old.ckpt")
    assert type(reloaded) is type(model) and reloaded.family == family
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in checkpoint["state_dict"].items())


def test_the_shipped_feature_network_loads_and_classifies_digits() -> None:
    model = load_model(DEFAULT_FEATURE_NET)
    assert model.family == "resnet" and not model.training
    images, labels = load_split("mnist", default_data_root(), train=False)
    x = to_float(images[:200])
    assert (model.classify(x).argmax(1) == labels[:200]).float().mean() > 0.95  # trained weights, not an init
    assert model.features(x).shape == (200, model.net.head[-1].in_features)


@pytest.mark.parametrize("class_path", ["models.diffusion.DiffusionModel", "models.diffusion.model.DiffusionModel"])
def test_a_diffusion_checkpoint_from_before_the_move_loads(class_path: str, tmp_path: Path) -> None:
    from models.diffusion import DiffusionModel

    torch.manual_seed(0)
    model = DiffusionModel(channels=[8, 16, 16], num_res_blocks=1, attention_levels=[2]).eval()
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["dgbench"]["class_path"] == "models.diffusion.DiffusionModel"
    checkpoint["dgbench"]["class_path"] = class_path  # the pre-move module path, or the file's own
    torch.save(checkpoint, tmp_path / "diffusion.ckpt")

    reloaded = load_model(tmp_path / "diffusion.ckpt")
    assert type(reloaded) is DiffusionModel and reloaded.hparams.channels == [8, 16, 16]
    state = reloaded.state_dict()
    assert state.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())
