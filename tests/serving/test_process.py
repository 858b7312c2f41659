"""modelbot-serve as the image runs it: the Dockerfile's command, environment and layout, as a process under gunicorn.

The image is serving/Dockerfile: the build context copied to /opt/ml/code (WORKDIR, PYTHONPATH), the model at
SM_MODEL_DIR=/opt/ml/model, MODELBOT_MODEL_MODULE from the MODEL_MODULE build argument, CMD ["serve"]. Here the
same layout lives in a temporary directory and `serve` is the console script of this venv. One server for the
module (gunicorn starts once), two workers, a 2 s predict timeout and a small request limit.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.serving.conftest import MODELS, ROOT, SCALE, ServeProcess, base_env

DOCKERFILE = ROOT / "serving" / "Dockerfile"
LIMIT = 20_000


def dockerfile() -> dict:
    """What the Dockerfile gives the process: its ENV (build argument substituted), WORKDIR and CMD."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    env, workdir, cmd = {}, None, None
    for line in text.splitlines():
        if line.startswith("ENV "):
            for name, value in re.findall(r'(\w+)=(\S+)', line[4:]):
                env[name] = value
        elif line.startswith("WORKDIR "):
            workdir = line.split(None, 1)[1].strip()
        elif line.startswith("CMD "):
            cmd = json.loads(line.split(None, 1)[1])
    return {"env": env, "workdir": workdir, "cmd": cmd}


def test_the_dockerfile_gives_the_layout_these_tests_run():
    image = dockerfile()
    assert image["cmd"] == ["serve"]
    assert image["workdir"] == "/opt/ml/code"
    assert image["env"]["PYTHONPATH"] == "/opt/ml/code"
    assert image["env"]["SM_MODEL_DIR"] == "/opt/ml/model"
    assert image["env"]["MODELBOT_MODEL_MODULE"] == "${MODEL_MODULE}"
    assert image["env"]["PATH"].startswith("/opt/venv/bin:")
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "FROM ${BASE_IMAGE}" in text
    assert "COPY . /opt/ml/code" in text and "EXPOSE 8080" in text


@pytest.fixture(scope="module")
def server(tmp_path_factory, tabular_model_dir):
    root = tmp_path_factory.mktemp("image")
    code, model = root / "opt/ml/code", root / "opt/ml/model"
    code.mkdir(parents=True)
    shutil.copy(MODELS / "tabular.py", code / "tabular.py")
    shutil.copytree(tabular_model_dir, model)
    image = dockerfile()
    paths = {"/opt/ml/code": str(code), "/opt/ml/model": str(model)}
    env = base_env()
    for name, value in image["env"].items():
        if name == "PATH":
            continue  # the venv's bin is this test's interpreter's
        env[name] = paths.get(value, value.replace("${MODEL_MODULE}", "tabular"))
    env.update(SAGEMAKER_MODEL_SERVER_WORKERS="2", SAGEMAKER_MODEL_SERVER_TIMEOUT="2",
               MODELBOT_SERVE_MAX_REQUEST_BYTES=str(LIMIT))
    proc = ServeProcess(env, cwd=root / image["workdir"].lstrip("/"), log=root / "serve.log",
                        command=image["cmd"][0]).wait_ready()
    yield proc
    proc.stop()


def invoke(server, body, inference_id: str | None = None, content_type="application/json", **kw):
    headers = {"Content-Type": content_type}
    if inference_id:
        headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
    data = json.dumps(body) if isinstance(body, dict) else body
    return requests.post(server.url + "/invocations", data=data, headers=headers, timeout=kw.get("timeout", 30))


def wait_for_log(server, needle: str, timeout: float = 10, times: int = 1) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = server.output()
        if out.count(needle) >= times:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the log:\n{server.output()[-3000:]}")


def test_ping_and_a_request_through_gunicorn_with_two_workers(server):
    assert requests.get(server.url + "/ping", timeout=5).json() == {"status": "ok", "module": "tabular"}
    answer = invoke(server, {"instances": [{"tenure_months": 20, "plan": "pro"}]})
    assert answer.status_code == 200
    assert answer.json() == {"predictions": [pytest.approx(SCALE * 0.2 + 0.25)]}
    out = wait_for_log(server, "Booting worker", times=2)
    assert "tabular loaded from" in out and "2 workers x 4 threads" in out


def test_eight_threads_hundreds_of_requests_all_answered_right(server):
    def client(seed: int) -> list[str]:
        rng = random.Random(seed)
        session = requests.Session()
        wrong = []
        for i in range(50):
            rows = [{"tenure_months": rng.randrange(0, 700), "plan": rng.choice(["basic", "pro"])}
                    for _ in range(rng.choice([1, 1, 5, 40]))]
            csv = rng.random() < 0.3
            if csv:
                answer = session.post(server.url + "/invocations", headers={"Content-Type": "text/csv"}, timeout=30,
                                      data="".join(f"{r['tenure_months']},,{r['plan']}\n" for r in rows))
            else:
                answer = session.post(server.url + "/invocations", json={"instances": rows}, timeout=30,
                                      headers={"X-Amzn-SageMaker-Inference-Id": f"c{seed}-{i}"})
            expected = [SCALE * (r["tenure_months"] % 100) / 100 + (0.25 if r["plan"] == "pro" else 0) for r in rows]
            if answer.status_code != 200 or answer.json()["predictions"] != pytest.approx(expected):
                wrong.append(f"client {seed} request {i}: {answer.status_code} {answer.text[:200]}")
        return wrong

    with ThreadPoolExecutor(8) as pool:
        wrong = [w for ws in pool.map(client, range(8)) for w in ws]
    assert wrong == []
    assert "inference_id=c7-49" in wait_for_log(server, "inference_id=c7-49")


def test_each_invocation_is_logged_with_its_inference_id(server):
    good, bad, broken = (f"inf-{uuid.uuid4().hex[:8]}" for _ in range(3))
    assert invoke(server, {"instances": [{"tenure_months": 1, "plan": "pro"}]}, good).status_code == 200
    assert invoke(server, {"instances": [{"tenure_months": "one"}]}, bad).status_code == 400
    assert invoke(server, {"instances": [{"tenure_months": 1, "monthly_spend": 666, "plan": "pro"}]},
                  broken).status_code == 500
    out = wait_for_log(server, f"inference_id={broken}")
    lines = {i: next(line for line in out.splitlines() if f"inference_id={i}" in line) for i in (good, bad, broken)}
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "  # one format, from the access log and from logging alike
    assert re.match(stamp + r"INFO \[\d+\] POST /invocations 200 1 row [\d.]+ ms inference_id=", lines[good])
    assert re.match(stamp + r"WARNING \[\d+\] POST /invocations 400 1 row [\d.]+ ms inference_id=", lines[bad])
    assert "WARNING" in lines[bad] and " 400 " in lines[bad] and "instances[0].tenure_months" in lines[bad]
    assert "ERROR" in lines[broken] and " 500 " in lines[broken]
    assert "predictions[0]: 1.5 is greater than the maximum of 1" in lines[broken]
    # each line names the worker that answered (the access log keeps its process id across gunicorn's fork)
    workers = set(re.findall(r"Booting worker with pid: (\d+)", out))
    assert {re.search(r"\[(\d+)\]", lines[i]).group(1) for i in (good, bad, broken)} <= workers, (lines, workers)


def test_a_body_over_the_limit_is_413_and_the_connection_still_serves(server):
    session = requests.Session()
    big = json.dumps({"instances": [{"tenure_months": 1, "plan": "pro"}] * 1000})
    assert len(big) > LIMIT
    answer = session.post(server.url + "/invocations", data=big, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert "MODELBOT_SERVE_MAX_REQUEST_BYTES" in answer.json()["error"]
    after = session.post(server.url + "/invocations", json={"instances": [{"tenure_months": 1, "plan": "pro"}]},
                         timeout=30)
    assert after.status_code == 200


def test_a_predict_past_the_timeout_loses_its_worker_and_the_server_goes_on(server):
    """SAGEMAKER_MODEL_SERVER_TIMEOUT=2: a predict that would run 30 s is cut at about 2 s; gunicorn forks a
    fresh worker from the loaded model and every later request is answered."""
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        invoke(server, {"instances": [{"tenure_months": 777, "plan": "pro"}]}, "inf-slow", timeout=25)
    assert time.monotonic() - started < 15
    wait_for_log(server, "predict has run for over 2 s (SAGEMAKER_MODEL_SERVER_TIMEOUT) on inference_id=inf-slow")
    for _ in range(10):
        assert invoke(server, {"instances": [{"tenure_months": 3, "plan": "basic"}]}).status_code == 200
