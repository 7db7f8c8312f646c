"""TensorBoard HParams: the recipe's hyper-parameters with the final losses, in the run's own log folder."""
from __future__ import annotations

from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ganzoo.recipe import prepare_recipe
from ganzoo.training.run_log import RunLog, flat_hparams

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart_pix2pix.yaml"


def test_flat_hparams_are_dotted_scalars_without_paths() -> None:
    flat = flat_hparams(prepare_recipe(RECIPE))
    assert flat["model.networks.G.ngf"] == 16 and flat["model.gan_loss"] == "vanilla"
    assert flat["train.optimizer.betas"] == "[0.5, 0.999]"
    assert "data.root" not in flat and not any(k.startswith("log.") for k in flat)
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


def test_close_writes_hparams_with_final_metrics(tmp_path: Path) -> None:
    log = RunLog(tmp_path, prepare_recipe(RECIPE))
    log.scalars(3, {"G_gan": torch.tensor(2.0)}, {})
    log.scalars(6, {"G_gan": torch.tensor(1.25), "D": torch.tensor(0.5)}, {})
    log.close()
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    assert [e.value for e in events.Scalars("final/G_gan")] == [1.25]
    assert events.Scalars("final/D")[0].step == 6
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"final/G_gan", "final/D"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.networks.G.ngf"].number_value == 16
    assert [p.name for p in (tmp_path / "logs").iterdir()] and not any((tmp_path / "logs").glob("*/")), \
        "no second run folder"
