"""The incremental admission index (macp.admission_index.Admitter) against the reference, the
full scan of macp.admission.admit (issue 11): on random queues, after every kind of change a
controller run meets -- claims, completions, failures, retries, holds, tasks added, edited
dependencies, refusals, time passing -- both claim the same task on the same runtime and
decide the same holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macp.admission import Admission, admit
from macp.admission_index import Admitter
from macp.config import default_config
from macp.taskdoc import TaskDocument

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
START = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
STATUSES = ["pending", "pending", "pending", "running", "gated", "completed", "completed", "failed", "escalated", "cancelled"]
CONFIG = default_config()
CONFIG["runtimes"]["codex"]["max_parallel"] = 1


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def tasks(draw, task_id: str, ids: list[str]) -> dict:
    task: dict = {"id": task_id, "status": draw(st.sampled_from(STATUSES))}
    if draw(st.booleans()):
        task["depends_on"] = draw(st.lists(st.sampled_from([*ids, "ghost"]), max_size=3))
    if draw(st.booleans()):
        task["priority"] = draw(st.sampled_from([-1, 0, 1, 2]))
    if draw(st.integers(0, 3)) == 0:
        task["not_before"] = stamp(START + timedelta(minutes=draw(st.integers(-10, 30))))
    if draw(st.booleans()):
        task["exclusive_group"] = draw(st.sampled_from(["g1", "g2"]))
    dispatch = draw(st.sampled_from(["legacy", "exec", "yolo"]))
    task["dispatch"] = dispatch
    if dispatch == "yolo":
        task["title"] = draw(st.sampled_from(["tidy the docs", "rotate the password"]))
        task["runtime"] = draw(st.sampled_from(["codex", "claude"]))
    if task["status"] in ("running", "gated"):
        task["claim"] = {"token": "other"}
        if dispatch == "yolo":
            task["attempt_runtime"] = task["runtime"]
    return task


def outcome(admission: Admission) -> tuple:
    holds = [(hold.task_id, hold.status, hold.changes, hold.event_type, hold.message) for hold in admission.holds]
    return (admission.task and admission.task["id"], admission.runtime, admission.why, holds)


def apply(document: TaskDocument, admission: Admission) -> None:
    """What the controller does with an admission: apply its holds, then claim its task."""
    for hold in admission.holds:
        task = {**document.get(hold.task_id), **hold.changes}
        if hold.status:
            task["status"] = hold.status
        document.replace(task)
    if admission.task is not None:
        claimed = {**admission.task, "status": "running", "claim": {"token": "me"}, "not_before": None}
        if admission.runtime:
            claimed["attempt_runtime"] = admission.runtime
        document.replace(claimed)


@PROPERTY
@given(st.data())
def test_the_admitter_claims_and_holds_as_the_full_scan_does(data):
    size = data.draw(st.integers(1, 10), label="size")
    ids = [f"t{n}" for n in range(size)]
    document = TaskDocument([data.draw(tasks(task_id, ids)) for task_id in ids], {})
    refused: dict[str, str] = {}
    admitter, now, added = Admitter(), START, 0
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        step = data.draw(st.sampled_from(["claim", "claim", "claim", "end", "set", "add", "depends", "refuse", "time"]))
        if step == "claim":
            expected = admit(document.tasks, CONFIG, {}, now, lambda task: task.get("title", ""), refused)
            actual = admitter.admit(document, CONFIG, {}, now, lambda task: task.get("title", ""), refused)
            assert outcome(actual) == outcome(expected)
            apply(document, expected)
        elif step == "end":
            active = [task for task in document.tasks if task["status"] in ("running", "gated")]
            if active:
                task = data.draw(st.sampled_from(active))
                ending = data.draw(st.sampled_from(["completed", "completed", "failed", "escalated", "pending", "gated"]))
                released = {"not_before": stamp(now + timedelta(minutes=1))} if ending == "pending" else {}
                document.replace({**task, "status": ending, "claim": None, **released})
        elif step == "set":
            task = data.draw(st.sampled_from(document.tasks))
            document.replace({**task, "status": data.draw(st.sampled_from(STATUSES))})
        elif step == "add":
            added += 1
            document.put(data.draw(tasks(f"n{added}", [*ids, f"n{added}"])))
        elif step == "depends":
            task = data.draw(st.sampled_from(document.tasks))
            others = [other["id"] for other in document.tasks]
            document.replace({**task, "depends_on": data.draw(st.lists(st.sampled_from([*others, "ghost"]), max_size=3))})
        elif step == "refuse":
            refused = {**refused, data.draw(st.sampled_from(ids)): "refused by the test"}
        else:
            now += timedelta(minutes=data.draw(st.integers(1, 20)))


def test_a_claim_among_ten_thousand_waiting_tasks_reads_only_what_changed():
    """The index reads the queue once; later claims look at the changed tasks only: the
    10,000 tasks waiting for a dependency are never read again."""

    class CountingList(list):
        reads = 0

        def __iter__(self):
            CountingList.reads += 1
            return super().__iter__()

    waiting = [{"id": f"w{n}", "status": "pending", "depends_on": ["gate"]} for n in range(10_000)]
    ready = [{"id": f"r{n}", "status": "pending"} for n in range(5)]
    gate = {"id": "gate", "status": "pending", "not_before": stamp(START + timedelta(days=1))}
    document = TaskDocument(CountingList([*ready, gate, *waiting]), {})
    admitter = Admitter()
    claimed = []
    for _ in range(5):
        admission = admitter.admit(document, CONFIG, {}, START, lambda task: "")
        apply(document, admission)
        claimed.append(admission.task["id"])
        document.replace({**document.get(admission.task["id"]), "status": "completed", "claim": None})
        if len(claimed) == 1:
            CountingList.reads = 0
    assert claimed == ["r0", "r1", "r2", "r3", "r4"]
    assert CountingList.reads == 0
    assert admitter.admit(document, CONFIG, {}, START, lambda task: "").task is None
