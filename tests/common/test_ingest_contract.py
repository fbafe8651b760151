"""The ingestion contract between the orchestrator (producer) and the ingest-worker
(consumer), in process: what a job message looks like on the wire, which payloads a worker
refuses for good (never retried), and where messages go in JetStream."""

from __future__ import annotations

import json
import uuid

import pytest
from nats.js import api as js_api
from sparkstack_common.ingestion.contract import (
    MSG_ID_HEADER,
    IngestLimits,
    IngestMessage,
    InvalidMessage,
    QueueSettings,
    encode_payload,
)

JOB, UPLOAD = str(uuid.uuid4()), str(uuid.uuid4())


def payload(**fields: object) -> bytes:
    base: dict[str, object] = {
        "job_id": JOB,
        "workspace": "shop",
        "kind": "document",
        "upload_id": UPLOAD,
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_a_message_round_trips_in_canonical_bytes() -> None:
    code = IngestMessage(JOB, "shop", "codebase", UPLOAD, codebase="api")
    wire = code.to_bytes()
    assert (
        wire
        == (
            f'{{"codebase":"api","job_id":"{JOB}","kind":"codebase","upload_id":"{UPLOAD}",'
            '"workspace":"shop"}'
        ).encode()
    )
    assert IngestMessage.from_bytes(wire) == code
    doc = IngestMessage(JOB, "shop", "document", UPLOAD)
    assert "codebase" not in doc.to_dict()
    assert IngestMessage.from_bytes(doc.to_bytes()) == doc
    # the job id is the message id: JetStream drops a second publish of one job
    assert doc.msg_id == JOB and doc.headers() == {MSG_ID_HEADER: JOB}
    assert encode_payload({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


def test_ids_are_normalised_uuids() -> None:
    upper = IngestMessage.from_bytes(payload(job_id=JOB.upper(), upload_id=UPLOAD.upper()))
    assert (upper.job_id, upper.upload_id) == (JOB, UPLOAD)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (payload(kind="video"), "unknown job kind 'video'"),
        (payload(kind=...), "unknown job kind None"),
        (payload(workspace=""), "workspace must be a non-empty string"),
        (payload(workspace=7), "workspace must be a non-empty string"),
        (payload(workspace="../etc"), "workspace"),
        (payload(kind="codebase"), "needs a non-empty codebase name"),
        (payload(kind="codebase", codebase=""), "needs a non-empty codebase name"),
        (payload(codebase="api"), "only codebase jobs carry a codebase name"),
        (payload(job_id=...), "job_id must be a UUID string"),
        (payload(job_id="job-1"), "job_id is not a UUID: 'job-1'"),
        (payload(upload_id=12), "upload_id must be a UUID string"),
        (payload(upload_id="nope"), "upload_id is not a UUID"),
    ],
)
def test_a_payload_off_the_contract_is_refused_for_good(wire: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        IngestMessage.from_bytes(wire)
    assert reason in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_a_producer_cannot_build_an_unknown_kind() -> None:
    with pytest.raises(InvalidMessage, match="unknown job kind 'video'"):
        IngestMessage(JOB, "shop", "video", UPLOAD)


def test_subjects_and_the_work_queue_stream() -> None:
    queue = QueueSettings(stream="JOBS", subject_prefix="t1.ingest", duplicate_window=120)
    assert queue.subject("document") == "t1.ingest.document"
    assert queue.subjects == ["t1.ingest.document", "t1.ingest.codebase"]
    assert queue.filter_subject == "t1.ingest.>"
    with pytest.raises(ValueError, match="unknown job kind 'video'"):
        queue.subject("video")
    config = queue.stream_config()
    assert config.name == "JOBS" and config.subjects == queue.subjects
    assert config.retention == js_api.RetentionPolicy.WORK_QUEUE  # a job is taken once
    assert config.storage == js_api.StorageType.FILE  # and survives a NATS restart
    assert config.duplicate_window == 120


def test_the_defaults_are_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = QueueSettings()
    assert (queue.stream, queue.subject_prefix, queue.consumer) == (
        "INGEST",
        "ingest",
        "ingest-worker",
    )
    assert (queue.duplicate_window, queue.max_deliver, queue.ack_wait_seconds) == (3600, 3, 60)
    monkeypatch.setenv("SPARKSTACK_INGEST_MAX_FILES", "12")
    limits = IngestLimits()
    assert limits.max_files == 12 and limits.public()["max_files"] == 12
    assert limits.public()["max_file_bytes"] == 1 << 20
