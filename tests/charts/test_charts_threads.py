"""Charts are rendered from handler and job threads at once: the object API must not share pyplot state."""

from concurrent.futures import ThreadPoolExecutor

from charts import examples
from charts.rollout import rollout
from charts.run_history import run_history


def test_concurrent_renders_match_a_lone_render():
    evidence, events = examples.rollout_frames()
    runs = examples.run_frame()
    jobs = [lambda: rollout(evidence, events, "churn", "v41", "v42").png,
            lambda: run_history(runs, "churn", "churn_lifecycle").png] * 4
    alone = [job() for job in jobs[:2]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda job: job(), jobs))
    assert together == alone * 4
