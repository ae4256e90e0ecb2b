"""Run folders: atomic writes, completion markers, locks (`files`), the typed stage artifacts every
consumer reads (`stages`) and the zero-shot check over their lineage (`provenance`)."""

from darla.artifacts.files import (
    CONFIG,
    DONE,
    StageDir,
    atomic_path,
    atomic_save,
    atomic_save_figure,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_out,
    cpu_name,
    file_hash,
    host_info,
    is_done,
    read_json,
    stage_hash,
)
from darla.artifacts.provenance import check_zero_shot, lineage
from darla.artifacts.stages import (
    MODEL_FILE,
    POLICY_FILE,
    RESULTS_FILE,
    ActArtifact,
    SeeArtifact,
    StageArtifact,
    TransferResult,
)

__all__ = [
    "CONFIG",
    "DONE",
    "MODEL_FILE",
    "POLICY_FILE",
    "RESULTS_FILE",
    "ActArtifact",
    "SeeArtifact",
    "StageArtifact",
    "StageDir",
    "TransferResult",
    "atomic_path",
    "atomic_save",
    "atomic_save_figure",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_out",
    "check_zero_shot",
    "cpu_name",
    "file_hash",
    "host_info",
    "is_done",
    "lineage",
    "read_json",
    "stage_hash",
]
