"""Inference: batched transcription of files and arrays, long-audio chunking, data-parallel runs.

    from nue_core import load, transcribe
    model = load("path/to/model")
    results = transcribe(model, ["a.wav", "folder_item.flac", (array, 8000)], batch_size=16)
    print(results[0].text, results[0].error)
"""

from nue_core.inference.chunking import ChunkPlan, join_all, join_texts, split_points
from nue_core.inference.engine import Engine, EngineLimits, EngineResult, QueueFull
from nue_core.data.audio_files import AUDIO_EXTENSIONS, collect_audio
from nue_core.inference.transcriber import Transcriber, TranscriptionResult, transcribe

__all__ = [
    "AUDIO_EXTENSIONS",
    "ChunkPlan",
    "Engine",
    "EngineLimits",
    "EngineResult",
    "QueueFull",
    "Transcriber",
    "TranscriptionResult",
    "collect_audio",
    "join_all",
    "join_texts",
    "split_points",
    "transcribe",
]
