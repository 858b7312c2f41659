from pathlib import Path

import pytest

from bot.registry import RegistryError, load_registry

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "models.toml"
    p.write_text(text)
    return p


def test_example_file_loads_with_defaults_applied():
    reg = load_registry(ROOT / "models.example.toml")
    churn = reg.get("churn")
    assert churn.endpoint == "churn-prod"
    assert churn.oncall == "U0BOB"  # the model's own on-call overrides the default group
    assert churn.alert_channel == "C0ALERTS"
    assert churn.region == "us-east-1"
    assert churn.rollout.steps == (10, 25, 50, 100)
    assert churn.rollout.alpha == 0.01


def test_model_without_rollout_table_gets_contract_defaults(tmp_path):
    reg = load_registry(write(tmp_path, '[models.x]\nchannel = "C1"\n[defaults]\noncall = "S1"\n'))
    x = reg.get("x")
    assert x.rollout.min_requests == 500 and x.rollout.bake_minutes == 60
    assert x.oncall == "S1"


def test_missing_file_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(RegistryError) as err:
        load_registry(tmp_path / "nope.toml")
    assert "nope.toml" in str(err.value) and "models.example.toml" in str(err.value)


def test_bad_toml_names_the_file(tmp_path):
    with pytest.raises(RegistryError, match="models.toml: not valid TOML"):
        load_registry(write(tmp_path, "[models.x\n"))


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[models.churn]\nchannel = "C1"\ndirection = "up"\n', "model 'churn', field 'direction'"),
        ('[models.churn]\nchannel = "C1"\nowners = ["alice"]\n', "model 'churn', field 'owners[0]': 'alice' is not a Slack user ID"),
        ('[models.churn]\nendpoint = "e"\n', "model 'churn', field 'channel': is required"),
        ('[models.churn]\nchannel = "C1"\nendpiont = "e"\n', "did you mean 'endpoint'"),
        ('[models.churn]\nchannel = "C1"\n[models.churn.rollout]\nsteps = [10, 50]\n', "last step must be 100"),
        ('[models.churn]\nchannel = "C1"\n[models.churn.rollout]\nsteps = [50, 10, 100]\n', "increase strictly"),
        ('[models.churn]\nchannel = "C1"\n[models.churn.rollout]\nalpha = 2\n', "field 'rollout.alpha'"),
        ('[defaults]\nadmins = ["bob"]\n', "field 'defaults.admins[0]'"),
        ('[models.churn]\nchannel = "general"\n', "not a Slack channel ID"),
    ],
)
def test_bad_fields_name_file_model_and_field(tmp_path, body, expected):
    with pytest.raises(RegistryError) as err:
        load_registry(write(tmp_path, body))
    assert str(tmp_path / "models.toml") in str(err.value)
    assert expected in str(err.value)


def test_suggestions_for_unknown_names():
    reg = load_registry(ROOT / "models.example.toml")
    assert reg.suggest("chrun") == ["churn"]
    assert reg.suggest("zzzzzz") == []
