"""Reads back what an offline W&B run logged, from its ``run-<id>.wandb`` file.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 1), then
32 KiB blocks of LevelDB-log records (4-byte CRC, 2-byte length, 1-byte type: full / first /
middle / last), each payload a ``wandb_internal_pb2.Record`` protobuf. Tests use this to check
images, artifacts, metrics and config without a W&B server.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

HEADER = 7
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pending, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        block_left = BLOCK - (pos % BLOCK)
        if block_left < 7:  # trailer padding
            pos += block_left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """``{"history": {key: [values]}, "config": {...}, "summary": {...}, "artifacts":
    [{name, type, files}], "run": {group, job_type, ...}, "files": [...]}`` of one offline run."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = Path(run_dir).glob("run-*.wandb")
    history: dict[str, list] = defaultdict(list)
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    artifacts: list[dict[str, Any]] = []
    run: dict[str, Any] = {}
    for raw in payloads(log):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                history[key].append(json.loads(item.value_json))
        elif kind == "config":
            for item in rec.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                summary[key] = json.loads(item.value_json)
        elif kind == "artifact":
            a = rec.artifact
            artifacts.append(
                {"name": a.name, "type": a.type, "files": [m.path for m in a.manifest.contents]}
            )
        elif kind == "run":
            # A run may be recorded more than once (its start, later updates that leave fields
            # empty, depending on timing): keep every field's last non-empty value.
            fields = {
                "group": rec.run.run_group,
                "job_type": rec.run.job_type,
                "id": rec.run.run_id,
            }
            run.update({k: v for k, v in fields.items() if v or k not in run})
            for item in rec.run.config.update:
                config[item.key] = json.loads(item.value_json)
    return {
        "history": dict(history),
        "config": config,
        "summary": summary,
        "artifacts": artifacts,
        "run": run,
    }
