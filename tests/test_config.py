import dataclasses

import pytest
import yaml

from sweeps.config import CONFIG_DIR, ConfigError, RayConfig, StudyConfig, load_config


@pytest.mark.parametrize("name", ["default", "smoke", "humanml3d", "action3d"])
def test_shipped_configs_load_and_round_trip(name, tmp_path):
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    assert isinstance(config, StudyConfig) and config.name == name
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(resolved) == config


def test_defaults_and_overrides():
    config = load_config(
        overrides=[
            "grid.fractions=[0.2, 1.0]",
            "finetune.steps=7",
            "ray.use_gpu=true",
            "ray.gpus_per_worker=0.5",
            "data.root=/tmp/x",
        ]
    )
    assert config.grid.fractions == (0.2, 1.0) and config.finetune.steps == 7
    assert config.ray.use_gpu and config.data.root == "/tmp/x"
    assert config.encoder.kind == "hf"


@pytest.mark.parametrize(
    "override, message",
    [
        ("grid.fractons=[0.5]", "unknown key grid.fractons; allowed: baseline, fractions"),
        ("nonsense=1", "unknown key nonsense; allowed:"),
        ("grid.fractions=[0.5, 1.5]", r"grid: fractions must be in \(0, 1\]"),
        ("finetune.steps=ten", "finetune.steps: expected a number, got 'ten'"),
        ("finetune.steps=2.5", "finetune.steps: expected an integer"),
        ("ray.use_gpu=maybe", "ray.use_gpu: expected true or false"),
        ("ray.num_workers=-1", r"ray: num_workers must be >= 0 \(0: local mode\), got -1"),
        ("attacks.recipes=[leet]", "attacks: unknown recipe 'leet'"),
        ("encoder.kind=bert", "encoder: text encoder kind must be one of"),
        ("data.kind=humanml3d", "data: a humanml3d study needs data.root"),
        ("data.eval_kind=kinect", "data: eval_kind must be '' .the study's own test split. or"),
        ("data.eval_kind=action3d", "data: eval_kind: action3d needs data.eval_root"),
        ("data.eval_root=/x", "data: eval_root is read only with eval_kind: action3d"),
        ("search.mode=random", "search: mode must be 'grid' or 'optuna'"),
        ("search.objective=loss", "search: objective must be one of fid, delta_fid"),
        ("search.lr_text=[1e-3, 1e-5]", r"search: lr_text must be a range \[low, high\]"),
        ("search.prompts=8", "search: prompts must be 0 .all. or at least 32"),
        ("search.objective_attack=qwerty", "search.objective_attack: 'qwerty' is not one of"),
        ("search.objective_attack=leet", "search: objective_attack must be one of strongest"),
        ("finetune", "expected key.path=value"),
    ],
)
def test_bad_values_give_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(overrides=[override])
    assert "\n" not in str(err.value)


def test_the_transfer_protocol_refuses_what_it_cannot_score():
    transfer = ["data.eval_kind=action3d", "data.eval_root=/x"]
    with pytest.raises(ConfigError, match="kind 'kit' is not on them"):
        load_config(overrides=[*transfer, "data.kind=kit", "data.root=/k"])
    with pytest.raises(ConfigError, match="search.mode: optuna .* has none"):
        load_config(overrides=[*transfer, "search.mode=optuna"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("grid: 3\n")
    with pytest.raises(ConfigError, match="grid: expected a mapping"):
        load_config(bad)


def test_fine_tune_trials_hold_the_workers_share_only_in_local_mode():
    assert RayConfig(num_workers=0).finetune_trial_resources() == {"CPU": 1.0}
    local_gpu = RayConfig(num_workers=0, use_gpu=True, cpus_per_worker=4, gpus_per_worker=1)
    assert local_gpu.finetune_trial_resources() == {"CPU": 4, "GPU": 1}
    # with Ray Train workers the workers hold the CPUs and GPUs; the trial a token
    workers = RayConfig(num_workers=2, use_gpu=True, gpus_per_worker=1)
    assert workers.finetune_trial_resources() == {"CPU": 0, "memory": 1}
    assert RayConfig(num_workers=0).local_finetunes and not workers.local_finetunes
    # stage 0's trainings: an evaluation trial's CPUs, a worker's GPU where the study uses GPUs
    assert local_gpu.stage0_task_options() == {"num_cpus": 1.0, "num_gpus": 1}
    assert RayConfig(cpus_per_eval_trial=3).stage0_task_options() == {"num_cpus": 3}


def test_fine_tunes_at_once_count_gpus_and_take_the_configured_slots():
    default = load_config(CONFIG_DIR / "default.yaml").ray
    assert default.finetunes_at_once({"CPU": 2.0}) == 2  # local mode, 1 CPU each
    humanml3d = load_config(CONFIG_DIR / "humanml3d.yaml").ray
    auto = dataclasses.replace(humanml3d, finetune_slots=0)
    # 4 workers x (4 CPUs, 1 GPU) a fine-tune: the GPUs decide, not the CPUs (200 // 16 = 12)
    assert auto.finetunes_at_once({"CPU": 200.0, "GPU": 16.0}) == 4
    # an autoscaling cluster's head alone (no GPU yet) holds none: one, so that Tune asks for
    # a node; the shipped config names the 4 that ray_cluster.yaml can grow to
    assert auto.finetunes_at_once({"CPU": 8.0}) == 1
    assert humanml3d.finetune_slots == 4 and humanml3d.finetunes_at_once({"CPU": 8.0}) == 4
    with pytest.raises(ValueError, match="finetune_slots"):
        RayConfig(finetune_slots=-1)


@pytest.mark.parametrize(
    "steps, grace, factor",
    [(16, 4, 2), (15, 4, 2), (4, 2, 2), (16, 0, 2), (20000, 0, 3), (10, 10, 2), (10, 50, 2)],
)
def test_search_trials_report_at_every_rung_ray_asha_compares(steps, grace, factor):
    # without checkpoints the worker scores the model at rung_steps and its last step only: a
    # rung ASHA has below the last step that the worker skips would never stop a trial
    from sweeps.execution import asha_milestones
    from sweeps.search import make_scheduler, rung_steps

    config = load_config(
        overrides=[
            f"finetune.steps={steps}",
            f"search.grace_steps={grace}",
            f"search.reduction_factor={factor}",
        ]
    )
    milestones = asha_milestones(make_scheduler(config), steps)
    if milestones is None:
        pytest.skip("this Ray's ASHA internals are outside the versions the sweep reads")
    assert rung_steps(config) == milestones
    if grace == 0:  # a quarter of the fine-tune
        assert milestones[0] == steps // 4
