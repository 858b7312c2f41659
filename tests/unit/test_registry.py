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


@pytest.mark.parametrize(
    "body, expected",
    [
        # Issue 21, item 9: two models on one endpoint or one DAG would move each other's traffic.
        ('[models.a]\nchannel = "C1"\nendpoint = "e1"\n[models.b]\nchannel = "C2"\nendpoint = "e1"\n',
         "models 'a' and 'b', field 'endpoint': both name 'e1'; two models may not share an endpoint"),
        ('[models.a]\nchannel = "C1"\ndag_id = "d"\n[models.b]\nchannel = "C2"\ndag_id = "d"\n',
         "models 'a' and 'b', field 'dag_id': both name 'd'; two models may not share a dag_id"),
        ('[models.a]\nchannel = "C1"\ndag_id = "churn daily"\n', "model 'a', field 'dag_id': 'churn daily' is not a "
                                                                 "valid Airflow dag_id"),
        ('[models.a]\nchannel = "C1"\ndag_id = "' + "d" * 251 + '"\n', "is not a valid Airflow dag_id"),
        # Issue 20: scaling bounds that make no sense.
        ('[models.a]\nchannel = "C1"\n[models.a.scaling]\nmin_instances = 3\nmax_instances = 2\n'
         'target_invocations_per_instance = 700\n', "field 'scaling': max_instances (2) must be at least min_instances (3)"),
        ('[models.a]\nchannel = "C1"\n[models.a.scaling]\nmin_instances = 0\nmax_instances = 2\n'
         'target_invocations_per_instance = 700\n', "cannot scale below 1 instance"),
        ('[models.a]\nchannel = "C1"\n[models.a.scaling]\nmax_instances = 2\ntarget_invocations_per_instance = 0\n',
         "field 'scaling.target_invocations_per_instance': 0: the target is invocations per instance per minute"),
        # Issue 19: the quality table.
        ('[models.a]\nchannel = "C1"\n[models.a.quality]\nlabels = "s3://b/l"\n', "field 'quality.tolerance': is required"),
        ('[models.a]\nchannel = "C1"\n[models.a.quality]\nlabels = "bucket/l"\ntolerance = 0.05\n',
         "field 'quality.labels': 'bucket/l' is not an S3 location"),
        ('[models.a]\nchannel = "C1"\n[models.a.quality]\nlabels = "s3://b/l"\ntolerance = 0.05\nwindow = 3\n',
         "field 'quality.window': unknown field (did you mean 'window_days'?)"),
        # Issue 22: latency is judged only with a positive relative margin.
        ('[models.a]\nchannel = "C1"\n[models.a.rollout]\nlatency_margin = 0\n', "field 'rollout.latency_margin'"),
    ],
)
def test_new_sections_and_shared_names_are_refused_with_the_rule(tmp_path, body, expected):
    with pytest.raises(RegistryError) as err:
        load_registry(write(tmp_path, body))
    assert expected in str(err.value)


def test_optional_sections_take_their_defaults(tmp_path):
    reg = load_registry(write(tmp_path, '''
[models.a]
channel = "C1"
dag_id = "a_lifecycle"
endpoint = "a-prod"
metric = "auc"
[models.a.pipeline]
module = "a_model"
label = "y"
image = "img"
artifacts = "s3://ml-artifacts/a"
[models.a.quality]
labels = "s3://ml-labels/a/"
tolerance = 0.05
[models.a.scaling]
max_instances = 4
target_invocations_per_instance = 700
'''))
    a = reg.get("a")
    assert a.pipeline.capture_percent == 100 and a.pipeline.capture_destination == "s3://ml-artifacts/a/capture"
    assert (a.quality.window_days, a.quality.min_labels, a.quality.retrain_on_decay) == (7, 200, False)
    assert a.scaling.min_instances == 1 and a.scaling.scale_in_cooldown_seconds is None
    assert a.rollout.latency_margin is None
